"""examples/llm_tokens: a reader that disconnects mid-answer and resumes from its offset ends
with exactly the answer; a late reader catches up; `chanctl send NAME stop` cancels."""

from __future__ import annotations

import importlib.util

from daemonkit import TestEnv, cli, wait_for
from examplekit import EXAMPLES, Procs

import chanctl
from chanctl.errors import ChannelNotFound

_spec = importlib.util.spec_from_file_location("llm_model", EXAMPLES / "llm_tokens" / "model.py")
assert _spec is not None and _spec.loader is not None
_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_model)
answer = _model.answer

PROMPT = "why do agents need durable streams?"


def _count(c: chanctl.Client, name: str, type_: str) -> int:
    try:
        return sum(1 for m in c.replay(name) if m.type == type_)
    except ChannelNotFound:
        return 0


def test_resume_mid_answer_and_late_join(
    tenv: TestEnv, ex_env: dict[str, str], procs: Procs
) -> None:
    name, tokens = "answer-1", 300  # 3 s or more: the first reader leaves mid-answer
    worker = procs.python(
        ex_env, "llm_tokens/worker.py", name, PROMPT, "--tokens", str(tokens), "--delay", "0.01"
    )
    offset_file = tenv.root / "reader.offset"
    first = procs.python(
        ex_env, "llm_tokens/reader.py", name, "--offset-file", str(offset_file), "--max", "15"
    )
    out1, err1 = first.communicate(timeout=30)
    assert first.returncode == 0, err1
    assert "[disconnected at" in err1
    assert worker.poll() is None, "the answer must still be streaming when the reader leaves"

    late = procs.python(ex_env, "llm_tokens/reader.py", name)  # joins late: from the start
    second = procs.python(ex_env, "llm_tokens/reader.py", name, "--offset-file", str(offset_file))
    out2, err2 = second.communicate(timeout=60)
    out_late, _ = late.communicate(timeout=60)
    worker_out, worker_err = worker.communicate(timeout=30)
    assert worker.returncode == 0, worker_err

    full = answer(PROMPT, tokens)
    assert out1 + out2 == full  # nothing twice, nothing missed
    assert out_late == full
    assert len(out1) < len(full) / 2
    with chanctl.Client(ex_env["CHANCTL_URL"], autostart=False) as c:
        kinds = [m.type for m in c.replay(name)]
        assert kinds == ["prompt"] + ["token"] * tokens + ["done"]
        assert c.info(name).closed


def test_stop_cancels_the_generation(tenv: TestEnv, ex_env: dict[str, str], procs: Procs) -> None:
    name, tokens = "answer-2", 2000
    worker = procs.python(
        ex_env, "llm_tokens/worker.py", name, PROMPT, "--tokens", str(tokens), "--delay", "0.005"
    )
    with chanctl.Client(ex_env["CHANCTL_URL"], autostart=False) as c:
        wait_for(lambda: _count(c, name, "token") >= 10, 20, "the first tokens")
        sent = cli(tenv, "send", name, "stop", env=ex_env)
        assert sent.returncode == 0, sent.stderr
        _, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err
        msgs = list(c.replay(name))
        streamed = sum(1 for m in msgs if m.type == "token")
        assert msgs[-1].type == "cancelled" and msgs[-1].text == str(streamed)
        assert 10 <= streamed < tokens
        assert "".join(m.text or "" for m in msgs if m.type == "token") == answer(PROMPT, streamed)
        assert c.info(name).closed
        # The stop was handled: the producer position is past it, so it stops nothing later.
        assert list(c.recv(name)) == []
