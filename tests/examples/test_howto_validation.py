"""docs/validation.md: a request that breaks its contract's rules, as a client sees it."""

from __future__ import annotations

import pytest


@pytest.mark.usefixtures("in_repo_root")
def test_a_client_reads_the_bad_request() -> None:
    # region bad-request
    import grpc
    import pytest
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    from emulator import Emulator

    with Emulator(protos="tests/protos/validation") as emu:
        signup = emu.stub("shop.v1.Signup")
        request = {"name": "A", "email": "ann@example.com", "sku": "ABC-1234", "age": 41}
        with pytest.raises(grpc.RpcError) as caught:
            signup.Register({**request, "tags": ["new"]})
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        # invalid request to shop.v1.Signup/Register: request.contact: exactly one field is
        # required in oneof (and 1 more)
        print(caught.value.details())

        bad = error_details_pb2.BadRequest()
        rpc_status.from_call(caught.value).details[0].Unpack(bad)
        for violation in bad.field_violations:
            # contact: exactly one field is required in oneof (required)
            # name: must be at least 2 characters (string.min_len)
            print(f"{violation.field}: {violation.description} ({violation.reason})")

        assert emu.calls("shop.v1.Signup/Register").last.violations == (
            "request.contact: exactly one field is required in oneof",
            "request.name: must be at least 2 characters",
        )
    # endregion
    assert [(v.field, v.reason) for v in bad.field_violations] == [
        ("contact", "required"),
        ("name", "string.min_len"),
    ]
