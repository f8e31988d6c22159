"""End-to-end check of a Python client generated from proto/ with grpcio-tools.

Usage: client_test.py GENERATED_DIR HOST:PORT TOKEN [CA_FILE]
Creates a VM, streams an exec's output, checkpoints the VM, lists checkpoints and images,
deletes the VM. With CA_FILE the server speaks TLS: the client verifies it with that CA, and
a plaintext channel must fail.
"""
import sys

gen_dir, address, token = sys.argv[1:4]
ca_file = sys.argv[4] if len(sys.argv) > 4 else None
sys.path.insert(0, gen_dir)

import grpc  # noqa: E402
from noid.v1 import (checkpoint_pb2, exec_pb2, image_pb2, service_pb2,  # noqa: E402
                     service_pb2_grpc, vm_pb2)

auth = [("authorization", "Bearer " + token)]
name = "py-tls" if ca_file else "py"
if ca_file:
    with open(ca_file, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    stub = service_pb2_grpc.NoidStub(grpc.secure_channel(address, credentials))
    plain = service_pb2_grpc.NoidStub(grpc.insecure_channel(address))
    try:
        plain.WhoAmI(service_pb2.WhoAmIRequest(), metadata=auth, timeout=5)
        raise AssertionError("a plaintext call to a TLS server succeeded")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAVAILABLE, e.code()
else:
    stub = service_pb2_grpc.NoidStub(grpc.insecure_channel(address))

vm = stub.CreateVm(vm_pb2.CreateVmRequest(name=name), metadata=auth)
assert vm.name == name and vm.state == vm_pb2.VM_STATE_RUNNING, vm


def requests():
    yield exec_pb2.ExecRequest(start=exec_pb2.ExecStart(
        vm=name, argv=["sh", "-c", "for i in 1 2 3; do echo line$i; done; echo oops >&2; exit 5"]))


stdout, stderr, exit_code, chunks = b"", b"", None, 0
for msg in stub.Exec(requests(), metadata=auth):
    kind = msg.WhichOneof("msg")
    if kind == "stdout":
        stdout += msg.stdout
        chunks += 1
    elif kind == "stderr":
        stderr += msg.stderr
    elif kind == "exit":
        exit_code = msg.exit.code
assert stdout == b"line1\nline2\nline3\n", stdout
assert stderr == b"oops\n", stderr
assert exit_code == 5, exit_code
assert chunks >= 1

ckpt = stub.CreateCheckpoint(checkpoint_pb2.CreateCheckpointRequest(vm=name, label="from-python"),
                             metadata=auth)
listed = stub.ListCheckpoints(checkpoint_pb2.ListCheckpointsRequest(vm=name), metadata=auth)
assert [c.id for c in listed.checkpoints] == [ckpt.id], listed
assert listed.checkpoints[0].label == "from-python"

try:
    stub.GetVm(vm_pb2.GetVmRequest(name="nope"), metadata=auth)
    raise AssertionError("GetVm of an unknown VM succeeded")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()
    # The reason, from the status's google.rpc.ErrorInfo, as grpcio-status reads it.
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status
    info = error_details_pb2.ErrorInfo()
    assert rpc_status.from_call(e).details[0].Unpack(info)
    assert (info.reason, info.domain) == ("VM_NOT_FOUND", "noid.dev"), info

images = stub.ListImages(image_pb2.ListImagesRequest(), metadata=auth)
assert images.images[0].name == "default", images
assert vm.image == "default", vm
try:
    stub.GetImage(image_pb2.GetImageRequest(name="no-such-image"), metadata=auth)
    raise AssertionError("GetImage of an unknown image succeeded")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()

stub.DeleteVm(vm_pb2.DeleteVmRequest(name=name), metadata=auth)
print("python client: ok" + (" (TLS)" if ca_file else ""))
