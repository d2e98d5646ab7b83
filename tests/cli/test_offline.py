"""No network without --online: the socket guard around every command, and a whole CLI run on a relative
--model (trained in one folder, evaluated from another) that asks no other machine for anything."""

import json
import socket

import pytest

from loralab.cli import main
from loralab.cli.offline import NetworkRefused, offline_sockets


def test_the_guard_refuses_other_machines_and_lets_loopback_through():
    with offline_sockets(False):
        with pytest.raises(NetworkRefused, match="network access to huggingface.co refused"):
            socket.getaddrinfo("huggingface.co", 443)
        with pytest.raises(NetworkRefused, match="8.8.8.8"):
            socket.create_connection(("8.8.8.8", 53), timeout=1)
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
        server.close()
    assert socket.getaddrinfo.__name__ == "getaddrinfo"  # put back


@pytest.fixture
def attempts(monkeypatch):
    """Every lookup and connection that gets past the guard (the guard wraps whatever it finds)."""
    seen = []
    lookup, connect = socket.getaddrinfo, socket.socket.connect

    def record_lookup(host, *args, **kwargs):
        seen.append(("lookup", host))
        return lookup(host, *args, **kwargs)

    def record_connect(sock, address):
        seen.append(("connect", address))
        return connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", record_lookup)
    monkeypatch.setattr(socket.socket, "connect", record_connect)
    return seen


def test_a_relative_model_is_recorded_absolute_and_read_offline_from_anywhere(tmp_path, monkeypatch, capsys,
                                                                              minilm_tokenizer, attempts):
    from run_fixtures import save_tiny_bert

    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    save_tiny_bert(tmp_path / "work" / "tiny", minilm_tokenizer)
    (tmp_path / "work" / "t.csv").write_text("id,prompt,A,B,answer\nq1,Why?,yes,no,A\nq2,How?,so,thus,B\n")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path / "work")
    assert main(["train", "--train", "t.csv", "--model", "tiny", "--out", "run", "--max-steps", "1", "--quiet",
                 "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "work" / "run" / "run.json").read_text())
    assert record["config"]["model"] == str((tmp_path / "work" / "tiny").resolve())
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["evaluate", "--run", "../work/run", "--data", "../work/t.csv", "--quiet", "--device", "cpu"]) == 0
    # An old record naming its model relatively: refused in one line, the hub never asked.
    record["config"]["model"] = "tiny"
    (tmp_path / "work" / "run" / "run.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["evaluate", "--run", "../work/run", "--data", "../work/t.csv", "--quiet", "--device", "cpu"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert all(host in ("localhost", "127.0.0.1", "::1", socket.gethostname()) or str(host).startswith("/")
               for _, host in ((kind, a if isinstance(a, str) else a[0]) for kind, a in attempts)), attempts
