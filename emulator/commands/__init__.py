"""`emulate` subcommands that serve nothing: each module has `run(argv) -> exit status`."""
