"""Real-world contracts nobody here wrote, called with their publishers' own generated code.

The .proto files ship inside PyPI's googleapis-common-protos (long-running operations, locations)
and grpc-google-iam-v1 (IAM policy), next to their _pb2 modules; the site-packages directory that
holds `google/` is their import root, so their imports (google/api/annotations.proto, client.proto,
field_behavior.proto, resource.proto, google/rpc/status.proto, ...) resolve from there too.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.cloud.location import locations_pb2
from google.iam.v1 import iam_policy_pb2, iam_policy_pb2_grpc, options_pb2, policy_pb2
from google.longrunning import operations_pb2, operations_pb2_grpc, operations_proto_pb2
from google.protobuf import descriptor, empty_pb2, message, unknown_fields
from google.rpc import code_pb2

from emulator.testing import Emulator

SITE = Path(operations_proto_pb2.__file__).resolve().parents[2]  # holds google/...
FILES = {
    "google/longrunning/operations_proto.proto": operations_proto_pb2,
    "google/cloud/location/locations.proto": locations_pb2,
    "google/iam/v1/iam_policy.proto": iam_policy_pb2,
}
SERVICES = [
    "google.longrunning.Operations",
    "google.cloud.location.Locations",
    "google.iam.v1.IAMPolicy",
]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    # import_paths takes strings: Emulator(**config) does not convert Path objects (yet).
    with Emulator(protos=[SITE / name for name in FILES], import_paths=[str(SITE)]) as emu:
        yield emu


@pytest.fixture(scope="module")
def channel(emu: Emulator) -> grpc.Channel:
    return emu.channel()


@pytest.fixture(scope="module")
def operations(channel: grpc.Channel) -> operations_pb2_grpc.OperationsStub:
    return operations_pb2_grpc.OperationsStub(channel)


@pytest.fixture(scope="module")
def iam(channel: grpc.Channel) -> iam_policy_pb2_grpc.IAMPolicyStub:
    return iam_policy_pb2_grpc.IAMPolicyStub(channel)


class LocationsStub:
    """googleapis-common-protos ships locations_pb2 but no locations_pb2_grpc: the same stub,
    built from the package's own service descriptor and message classes."""

    def __init__(self, channel: grpc.Channel) -> None:
        service = locations_pb2.DESCRIPTOR.services_by_name["Locations"]
        self.ListLocations = self._method(channel, service.methods_by_name["ListLocations"])
        self.GetLocation = self._method(channel, service.methods_by_name["GetLocation"])

    @staticmethod
    def _method(channel: grpc.Channel, method: descriptor.MethodDescriptor) -> Callable[..., Any]:
        request = getattr(locations_pb2, method.input_type.name)
        response = getattr(locations_pb2, method.output_type.name)
        return channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=request.SerializeToString,
            response_deserializer=response.FromString,
        )


@pytest.fixture(scope="module")
def locations(channel: grpc.Channel) -> LocationsStub:
    return LocationsStub(channel)


def assert_schema_valid(msg: message.Message) -> None:
    """Parsed by the publisher's classes with nothing left over, at any depth."""
    assert msg.IsInitialized()
    assert type(msg).FromString(msg.SerializeToString()) == msg
    pending = [msg]
    while pending:
        current = pending.pop()
        assert len(unknown_fields.UnknownFieldSet(current)) == 0, current
        for field, value in current.ListFields():
            if field.message_type is None or (
                field.message_type.GetOptions().map_entry
                and field.message_type.fields_by_name["value"].message_type is None
            ):
                continue
            if field.message_type.GetOptions().map_entry:
                pending.extend(value.values())
            elif field.is_repeated:
                pending.extend(value)
            else:
                pending.append(value)


def assert_deterministic(rpc: Callable[[Any], message.Message], request: message.Message) -> Any:
    first, second = rpc(request), rpc(request)
    assert first.SerializeToString(deterministic=True) == second.SerializeToString(
        deterministic=True
    )
    assert_schema_valid(first)
    return first


# -- the contracts themselves ---------------------------------------------------------------


def test_the_contracts_load_under_their_upstream_names(emu: Emulator) -> None:
    contracts = emu.server.contracts
    assert list(contracts.services) == SERVICES
    for name in FILES:
        assert name in contracts.file_protos
    for imported in (
        "google/api/annotations.proto",
        "google/api/client.proto",
        "google/api/field_behavior.proto",
        "google/api/resource.proto",
        "google/rpc/status.proto",
        "google/iam/v1/policy.proto",
        "google/type/expr.proto",
    ):
        assert imported in contracts.file_protos


@pytest.mark.parametrize("name", list(FILES))
def test_the_served_schema_is_the_one_the_generated_code_was_built_from(
    emu: Emulator, name: str
) -> None:
    pool = emu.server.contracts.pool
    generated = FILES[name].DESCRIPTOR
    served = pool.FindFileByName(name)
    assert served.package == generated.package
    assert list(served.services_by_name) == list(generated.services_by_name)
    for svc in generated.services_by_name.values():
        ours = served.services_by_name[svc.name]
        assert [
            (m.name, m.input_type.full_name, m.output_type.full_name) for m in ours.methods
        ] == [(m.name, m.input_type.full_name, m.output_type.full_name) for m in svc.methods]
    for msg in generated.message_types_by_name.values():
        ours = pool.FindMessageTypeByName(msg.full_name)
        assert [(f.name, f.number, f.type) for f in ours.fields] == [
            (f.name, f.number, f.type) for f in msg.fields
        ]


def test_grpcurl_describes_the_real_world_services(emu: Emulator) -> None:
    grpcurl = str(Path(sys.executable).parent / "grpcurl")
    result = subprocess.run(
        [grpcurl, "-plaintext", emu.target, "describe", "google.iam.v1.IAMPolicy.GetIamPolicy"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "returns ( .google.iam.v1.Policy )" in result.stdout
    assert "(.google.api.http)" in result.stdout  # an option from an import in site-packages


# -- google.longrunning.Operations ----------------------------------------------------------


def test_get_operation(operations: operations_pb2_grpc.OperationsStub) -> None:
    request = operations_pb2.GetOperationRequest(name="operations/op-1")
    op = assert_deterministic(operations.GetOperation, request)
    assert isinstance(op, operations_pb2.Operation)
    assert op.name
    assert op.metadata.type_url.startswith("type.googleapis.com/")
    other = operations.GetOperation(operations_pb2.GetOperationRequest(name="operations/op-2"))
    assert other.SerializeToString() != op.SerializeToString()


def test_list_operations(operations: operations_pb2_grpc.OperationsStub) -> None:
    request = operations_pb2.ListOperationsRequest(name="operations", page_size=10)
    page = assert_deterministic(operations.ListOperations, request)
    assert page.operations
    assert all(op.name for op in page.operations)
    assert len({op.name for op in page.operations}) == len(page.operations)
    assert page.next_page_token


def test_delete_cancel_and_wait_operation(operations: operations_pb2_grpc.OperationsStub) -> None:
    name = "operations/op-1"
    deleted = operations.DeleteOperation(operations_pb2.DeleteOperationRequest(name=name))
    cancelled = operations.CancelOperation(operations_pb2.CancelOperationRequest(name=name))
    assert deleted == cancelled == empty_pb2.Empty()
    waited = assert_deterministic(
        operations.WaitOperation, operations_pb2.WaitOperationRequest(name=name)
    )
    assert waited.name


OPERATIONS = [operations_pb2.GetOperationRequest(name=f"operations/op-{i}") for i in range(8)]


def test_an_operation_has_a_result_exactly_when_it_is_done(
    operations: operations_pb2_grpc.OperationsStub,
) -> None:
    for request in OPERATIONS:
        op = operations.GetOperation(request)
        assert op.done == (op.WhichOneof("result") is not None), op


def test_an_operation_error_carries_a_real_status_code(
    operations: operations_pb2_grpc.OperationsStub,
) -> None:
    errors = [op.error for op in map(operations.GetOperation, OPERATIONS) if op.HasField("error")]
    assert errors, "no operation among the samples failed"
    valid = set(code_pb2.Code.values()) - {code_pb2.OK}
    for status in errors:
        assert status.code in valid, status
        assert status.message


# -- google.cloud.location.Locations -------------------------------------------------------


def test_list_locations(locations: LocationsStub) -> None:
    request = locations_pb2.ListLocationsRequest(name="projects/demo", page_size=5)
    page = assert_deterministic(locations.ListLocations, request)
    assert isinstance(page, locations_pb2.ListLocationsResponse)
    assert page.locations
    for location in page.locations:
        assert location.name and location.location_id and location.display_name
        assert all(k and v for k, v in location.labels.items())


def test_get_location(locations: LocationsStub) -> None:
    request = locations_pb2.GetLocationRequest(name="projects/demo/locations/europe-west1")
    location = assert_deterministic(locations.GetLocation, request)
    assert isinstance(location, locations_pb2.Location)
    assert location.name and location.location_id


# -- google.iam.v1.IAMPolicy ----------------------------------------------------------------


def _assert_plausible_policy(policy: policy_pb2.Policy) -> None:
    assert isinstance(policy, policy_pb2.Policy)
    assert policy.bindings
    for binding in policy.bindings:
        assert binding.role
        assert binding.members and all(binding.members)
    assert policy.etag


def test_get_iam_policy(iam: iam_policy_pb2_grpc.IAMPolicyStub) -> None:
    request = iam_policy_pb2.GetIamPolicyRequest(
        resource="projects/demo", options=options_pb2.GetPolicyOptions(requested_policy_version=3)
    )
    _assert_plausible_policy(assert_deterministic(iam.GetIamPolicy, request))


def test_set_iam_policy(iam: iam_policy_pb2_grpc.IAMPolicyStub) -> None:
    policy = policy_pb2.Policy(
        version=1,
        bindings=[policy_pb2.Binding(role="roles/viewer", members=["user:ada@example.com"])],
    )
    request = iam_policy_pb2.SetIamPolicyRequest(resource="projects/demo", policy=policy)
    _assert_plausible_policy(assert_deterministic(iam.SetIamPolicy, request))


def test_test_iam_permissions(iam: iam_policy_pb2_grpc.IAMPolicyStub) -> None:
    request = iam_policy_pb2.TestIamPermissionsRequest(
        resource="projects/demo", permissions=["storage.buckets.get", "storage.buckets.list"]
    )
    response = assert_deterministic(iam.TestIamPermissions, request)
    assert isinstance(response, iam_policy_pb2.TestIamPermissionsResponse)
    assert all(response.permissions)


def test_test_iam_permissions_answers_a_subset_of_the_request(
    iam: iam_policy_pb2_grpc.IAMPolicyStub,
) -> None:
    asked = ["storage.buckets.get", "storage.buckets.list"]
    request = iam_policy_pb2.TestIamPermissionsRequest(resource="projects/demo", permissions=asked)
    assert set(iam.TestIamPermissions(request).permissions) <= set(asked)


def test_a_second_emulator_with_the_same_seed_answers_the_same(
    emu: Emulator, iam: iam_policy_pb2_grpc.IAMPolicyStub
) -> None:
    request = iam_policy_pb2.GetIamPolicyRequest(resource="projects/demo")
    with Emulator(protos=[SITE / name for name in FILES], import_paths=[str(SITE)]) as again:
        theirs = iam_policy_pb2_grpc.IAMPolicyStub(again.channel()).GetIamPolicy(request)
    assert theirs.SerializeToString(deterministic=True) == iam.GetIamPolicy(
        request
    ).SerializeToString(deterministic=True)
