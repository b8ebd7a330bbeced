"""The reindex lease on every kind of store: S3 (moto enforces conditional writes), Azure Blob (Azurite
enforces them), Google Cloud Storage (gcp-storage-emulator, which takes the conditions but does not enforce
them: what GCS is sent is checked in test_object_stores.py) and local disk (a lock file)."""

import threading
import time

import pytest

from lookalike.core.lease import Lease, LeaseHeld, LeaseLost
from lookalike.core.store import Store

KEY = "indexes/t/_lease.json"


SERVERS = {"moto": "moto_server", "azurite": "azurite", "gcs": "gcs_emulator"}
ENFORCED = ("moto", "azurite", "local")  # where a write whose condition fails is refused


@pytest.fixture(params=[*SERVERS, "local"])
def store(request, tmp_path):
    if request.param == "local":
        return Store(str(tmp_path / "store"))
    url, options = request.getfixturevalue(SERVERS[request.param]).new_store()
    return Store(url, options)


@pytest.fixture
def enforcing_store(request, store):
    if request.node.callspec.params["store"] not in ENFORCED:
        pytest.skip("gcp-storage-emulator does not enforce ifGenerationMatch (real GCS does)")
    return store


@pytest.mark.slow
def test_of_many_runs_racing_for_the_lease_exactly_one_gets_it(enforcing_store):
    store = enforcing_store
    start = threading.Barrier(8)
    won, refused = [], []

    def contend(i):
        lease = Lease(store, KEY, ttl_s=60, what="index 't'")
        start.wait()
        try:
            lease.acquire(f"run-{i}")
            won.append(i)
        except LeaseHeld as e:
            refused.append(str(e))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 7
    holder = Lease(store, KEY, 60, "index 't'").read_holder()
    assert holder["run_id"] == f"run-{won[0]}"


def test_a_live_lease_is_refused_with_who_holds_it(store):
    first = Lease(store, KEY, ttl_s=60, what="index 't'")
    assert first.acquire("night-1") is None
    with pytest.raises(LeaseHeld, match=r"another reindex of index 't' is running: run night-1 .* expires in"):
        Lease(store, KEY, ttl_s=60, what="index 't'").acquire("night-2")
    first.release()
    assert not store.exists(KEY)
    assert Lease(store, KEY, ttl_s=60, what="index 't'").acquire("night-3") is None


@pytest.mark.slow
def test_heartbeat_keeps_a_lease_alive_past_its_ttl(store):
    holder = Lease(store, KEY, ttl_s=1.0, what="index 't'")
    holder.acquire("long-run")
    holder.start_heartbeat()
    try:
        # Wait (however slowly this machine runs) until the store shows a renewal more than two TTLs after the
        # lease was taken: only the heartbeat can have written it.
        acquired, deadline = holder.record.acquired_at, time.monotonic() + 30
        while Lease(store, KEY, 1.0, "index 't'").read_holder()["renewed_at"] <= acquired + 2.0:
            assert time.monotonic() < deadline, "the heartbeat did not renew the lease"
            time.sleep(0.05)
        with pytest.raises(LeaseHeld):
            Lease(store, KEY, ttl_s=1.0, what="index 't'").acquire("impatient")
        holder.ensure_held()
    finally:
        holder.release()


@pytest.mark.slow
def test_an_expired_lease_is_taken_over_and_its_stalled_holder_cannot_commit(enforcing_store):
    store = enforcing_store
    stalled = Lease(store, KEY, ttl_s=0.5, what="index 't'")
    stalled.acquire("crashed-run")          # no heartbeat: as if the process stopped
    time.sleep(0.8)
    successor = Lease(store, KEY, ttl_s=60, what="index 't'")
    previous = successor.acquire("next-night")
    assert previous.run_id == "crashed-run" and previous.state == "running"
    with pytest.raises(LeaseLost, match="taken over by another run"):
        stalled.ensure_held()
    stalled.release("failed")           # must not clobber the successor's lease
    assert Lease(store, KEY, 60, "index 't'").read_holder()["run_id"] == "next-night"
    successor.ensure_held()


def test_a_failed_run_leaves_its_run_id_for_the_next_one_to_resume(store):
    lease = Lease(store, KEY, ttl_s=600, what="index 't'")
    with pytest.raises(RuntimeError, match="boom"), lease.held("night-1"):
        raise RuntimeError("boom")
    # Released as failed: expired at once, so the next run need not wait for the TTL.
    previous = Lease(store, KEY, ttl_s=600, what="index 't'").acquire("night-2")
    assert (previous.run_id, previous.state) == ("night-1", "failed")
