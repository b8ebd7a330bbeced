"""gs:// and abfs:// stores on real emulators (gcp-storage-emulator from PyPI, Azurite from npm) through gcsfs and
adlfs: a store does on them what it does on S3 and local disk, a lease's writes carry each service's condition,
their clients' errors are told transient or not, and a flaky request is retried by one layer, not two."""

import pyarrow as pa
import pytest
from support.faulty_proxy import proxy
from support.servers import gcs_options

from lookalike.core.errors import Unavailable
from lookalike.core.lease import ConditionalObject, Lease, PreconditionFailed
from lookalike.core.store import Store, is_transient, with_retries

EMULATORS = {"azurite": "azurite", "gcs": "gcs_emulator"}


@pytest.fixture(params=list(EMULATORS))
def store(request) -> Store:
    url, options = request.getfixturevalue(EMULATORS[request.param]).new_store()
    return Store(url, options)


def test_a_store_on_gcs_and_azure_does_what_a_store_does(store, tmp_path):
    assert store.kind in ("gcs", "azure") and store.attempts == 1  # their clients retry by themselves
    store.check_writable()
    store.write_json("a/manifest.json", {"version": 1})
    store.write_parquet("a/part-0.parquet", pa.table({"id": ["x", "y"], "n": [1, 2]}))
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 40_000)  # 10 MB: the clients' chunked uploads
    store.upload(str(big), "a/big.bin")
    assert store.read_json("a/manifest.json") == {"version": 1}
    assert store.read_parquet("a/part-0.parquet")["n"].to_pylist() == [1, 2]
    assert store.list("a") == ["a/big.bin", "a/manifest.json", "a/part-0.parquet"]
    assert store.total_size(["a/big.bin"]) == big.stat().st_size
    store.download("a/big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
    store.delete("a", recursive=True)
    assert store.list("a") == [] and not store.exists("a/manifest.json")


def test_gcs_lease_writes_carry_the_generation_they_expect(gcs_emulator):
    """What GCS is sent: create with ifGenerationMatch=0, each renewal with the generation it read; a write
    with a stale generation is what real GCS refuses with 412 (the emulator does not enforce it)."""
    url, _ = gcs_emulator.new_store()
    with proxy(gcs_emulator.port, r"(?!)") as server:  # fails nothing, records everything
        store = Store(url, gcs_options(server.server_address[1]))
        lease = Lease(store, "indexes/t/_lease.json", ttl_s=60, what="index 't'")
        lease.acquire("night-1")
        created = lease._tag
        lease.renew()
        lease.release()
    uploads = [path for method, path, _ in server.requests if method == "POST" and "/upload/" in path]
    assert "ifGenerationMatch=0" in uploads[0] and "name=store/indexes/t/_lease.json" in uploads[0]
    assert f"ifGenerationMatch={created}" in uploads[1]


def test_a_refused_gcs_condition_is_a_precondition_failure(gcs_emulator):
    """Real GCS answers a failed ifGenerationMatch with 412 (injected here, the emulator never refuses): the
    lease reads it as "someone else wrote first", at once, without retrying."""
    url, _ = gcs_emulator.new_store()
    with proxy(gcs_emulator.port, r"^POST /upload/.*ifGenerationMatch=", status=412) as server:
        obj = ConditionalObject(Store(url, gcs_options(server.server_address[1])), "k.json")
        with pytest.raises(PreconditionFailed):
            obj.create(b"{}")
    assert server.failed == 1 and sum("/upload/" in path for _, path, _ in server.requests) == 1


@pytest.mark.slow
def test_a_flaky_gcs_request_is_retried_by_gcsfs_alone(gcs_emulator):
    url, _ = gcs_emulator.new_store()
    Store(url, gcs_emulator.options).write_json("k.json", {"ok": True})
    with proxy(gcs_emulator.port, r"(?!)") as calm:
        Store(url, gcs_options(calm.server_address[1])).read_json("k.json")
    with proxy(gcs_emulator.port, r"^GET ") as flaky:  # the first GET answers 503
        assert Store(url, gcs_options(flaky.server_address[1])).read_json("k.json") == {"ok": True}
    assert flaky.failed == 1 and len(flaky.requests) == len(calm.requests) + 1


def test_gcs_and_azure_client_errors_are_told_transient_or_not():
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError
    from gcsfs.retry import HttpError

    def azure_error(cls, status):
        error = cls(message=f"status {status}")
        error.status_code = status
        return error

    assert is_transient(HttpError({"code": 503, "message": "backend error"}))
    assert is_transient(HttpError({"code": 429, "message": "rate limited"}))
    assert not is_transient(HttpError({"code": 403, "message": "forbidden"}))
    assert is_transient(ServiceRequestError("connection refused"))
    assert is_transient(azure_error(HttpResponseError, 503))
    assert not is_transient(azure_error(HttpResponseError, 400))
    assert not is_transient(azure_error(ResourceNotFoundError, 404))
    # Where the client retried already, with_retries tries once and says so.
    with pytest.raises(Unavailable, match="still failing after the client's own retries"):
        with_retries(lambda: (_ for _ in ()).throw(HttpError({"code": 503, "message": "x"})), "read k", 1)
