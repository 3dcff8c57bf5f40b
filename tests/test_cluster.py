"""Dask distributed: a real `dask scheduler` and two `dask worker` processes on 127.0.0.1
(subprocesses, bounded in time). The same JSON as in-process; a worker killed mid-run loses
nothing and counts nothing twice; a scheduler that is not there is a one-line error (exit 2)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

import symgrad as sg  # noqa: E402
from symgrad import zoo  # noqa: E402
from symgrad.cli import main  # noqa: E402
from symgrad.cluster import connect, map_ordered  # noqa: E402
from symgrad.opcatalog import OpsConfig, run_ops  # noqa: E402
from symgrad.opcatalog.report import as_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
START_S = 90  # the scheduler and both workers must be up within this (a loaded 2-core machine)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dask(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DASK_DISTRIBUTED__WORKER__DAEMON="False")
    return subprocess.Popen([sys.executable, "-m", "distributed.cli." + args[0], *args[1:]],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


@pytest.fixture(scope="module")
def cluster():
    """A scheduler and two single-threaded workers without nannies (a killed worker stays
    dead, so its tasks must move), all on 127.0.0.1; every process ends with the module."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [_dask("dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                   "--no-dashboard")]
    try:
        for _ in range(2):
            procs.append(_dask("dask_worker", address, "--nthreads", "1", "--no-nanny",
                               "--no-dashboard", "--host", "127.0.0.1"))
        deadline = time.time() + START_S
        client = None
        while time.time() < deadline:
            try:
                client = client or distributed.Client(address, timeout=5)
                if len(client.scheduler_info()["workers"]) == 2:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"the Dask scheduler and 2 workers did not start within {START_S} s")
        yield client, procs
        client.close()
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _without_times(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    doc.pop("timing", None)
    for row in doc.get("rows", []):
        row.pop("seconds", None)
    return doc


def test_verify_on_the_cluster_gives_the_in_process_result(cluster):
    client, _ = cluster
    m = zoo.get("neuron")
    local = sg.verify(m, torch_fn=m.reference, samples=60, seed=4)
    remote = sg.verify(zoo.get("neuron"), torch_fn=m.reference, samples=60, seed=4,
                       client=client)
    assert json.dumps(local.as_dict(), sort_keys=True) == json.dumps(remote.as_dict(),
                                                                     sort_keys=True)
    t = zoo.get("tiny_gpt", config={"n_layers": 1})
    local = sg.verify(t, samples=3, seed=1)
    remote = sg.verify(zoo.get("tiny_gpt", config={"n_layers": 1}), samples=3, seed=1,
                       client=client)
    assert json.dumps(local.as_dict(), sort_keys=True) == json.dumps(remote.as_dict(),
                                                                     sort_keys=True)


def test_ops_on_the_cluster_give_the_in_process_report(cluster):
    client, _ = cluster
    cfg = OpsConfig(ops=("sigmoid", "softplus", "hardsigmoid"), dtypes=("float64", "float32"),
                    budget=8, second_order=False, gradcheck=False)
    local, remote = run_ops(cfg), run_ops(cfg, client=client)
    assert [(r.op, r.dtype) for r in remote.rows] == [(r.op, r.dtype) for r in local.rows]
    assert json.dumps(_without_times(as_json(local)), sort_keys=True) == json.dumps(
        _without_times(as_json(remote)), sort_keys=True)


def test_a_worker_killed_mid_run_loses_nothing_and_counts_nothing_twice(cluster):
    client, procs = cluster

    def slow_square(x: int, shared) -> int:  # local: shipped by value, workers need not
        time.sleep(0.2)                      # import the tests; slow enough to kill mid-run
        return x * x + shared
    results = []
    for i, r in enumerate(map_ordered(client, slow_square, list(range(24)), key="sq",
                                      shared=1000)):
        results.append(r)
        if i == 1:  # tasks are in flight on both workers: kill one (no nanny restarts it)
            os.killpg(procs[2].pid, signal.SIGKILL)
    assert results == [x * x + 1000 for x in range(24)]
    assert len(client.scheduler_info()["workers"]) == 1  # the work moved to the survivor


def test_a_scheduler_that_is_not_there_is_a_one_line_error(capsys):
    t0 = time.time()
    code = main(["verify", "neuron", "--samples", "5",
                 "--scheduler", f"127.0.0.1:{_free_port()}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and time.time() - t0 < 30
    assert err.count("\n") == 0 and "no Dask scheduler answered" in err
    assert connect(None, None) is None


@pytest.mark.parametrize("address", ["localhost", "http://127.0.0.1:8786", "tcp://h:port"])
def test_a_malformed_scheduler_address_is_a_one_line_error(capsys, address):
    # was distributed's ValueError traceback, exit 1 (newuser4 S2-1): no port, an unknown scheme
    code = main(["verify", "neuron", "--samples", "5", "--scheduler", address])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert f"--scheduler {address}: not a Dask scheduler address" in err
    assert "tcp://HOST:PORT" in err
