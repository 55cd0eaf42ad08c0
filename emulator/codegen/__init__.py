"""Python written from the contracts: `emulate generate` (typed modules) and `emulate scaffold`."""
