"""Declarative stubs: answers shaped in files (YAML, JSON), emulator.yaml or at run time.

    config.py     the shape of a stub (checked by the config schema)
    build.py      stubs checked against the contracts, with file, line and key
    conditions.py conditions on request fields and headers, with the reasons they fail
    messages.py   response messages, merged per field onto the deterministic default
    templates.py  Jinja2-sandboxed templates in string values
    model.py      compiled stubs, their responses and counters
    store.py      the stubs served, per method, indexed by equality conditions; near misses
    files.py      stub files and folders, and emulator.yaml's `stubs:`
    controls.py   `emu.stubs` and `emu.stub_for()`: stubs added at run time

`emulator.respond.stubs.StubResponder` answers calls with them. See docs/stubs.md.
"""
