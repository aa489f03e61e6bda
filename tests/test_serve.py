"""`wronai serve` as its clients meet it: a real server process on a free localhost port, the official `openai` client
and raw HTTP. The server runs the session's shared quick_test adapter (conftest.py) with an API key."""
import os, socket, subprocess, sys, threading, time
from pathlib import Path

import httpx
import openai
import pytest

from conftest import CHAT_TOKENS, Q1, Q2

ROOT = Path(__file__).resolve().parent.parent
WRONAI = ("-c", "from wronai.cli import main; raise SystemExit(main())")
KEY = "test-key-123"
pytestmark = pytest.mark.xdist_group("chat")            # one server, and chat_answers, per session: in one xdist worker

@pytest.fixture(scope="module")
def server(quick_run, tmp_path_factory):
    "`wronai serve --adapter RUN --port P --api-key KEY`, up and answering /health; stopped after the module."
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("serve")/"server.log"
    p = subprocess.Popen([sys.executable, *WRONAI, "serve", "--adapter", str(quick_run), "--port", str(port),
                          "--api-key", KEY], cwd=ROOT,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}, stdout=log.open("w"),
                         stderr=subprocess.STDOUT)
    url, t0 = f"http://127.0.0.1:{port}", time.time()
    while True:
        assert p.poll() is None, f"the server exited ({p.returncode}):\n{log.read_text()[-3000:]}"
        assert time.time() - t0 < 300, "the server did not answer /health within 300 s"
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200: break
        except httpx.HTTPError: time.sleep(0.5)
    yield url, log
    p.terminate()
    p.wait(timeout=60)

def client(url): return openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=600)

def test_greedy_answers_streamed_or_not_equal_wronai_chat(server, chat_answers):
    url, _ = server
    c = client(url)
    name = c.models.list().data[0].id
    for register, q in [("formal", Q1), ("informal", Q2)]:
        kw = dict(model=name, messages=[{"role": "user", "content": q}], temperature=0, max_tokens=CHAT_TOKENS,
                  extra_body={"register": register})
        whole = c.chat.completions.create(**kw).choices[0].message.content
        streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(**kw, stream=True)
                           if ch.choices)
        assert whole == streamed == chat_answers[register].strip(), (register, whole, streamed, chat_answers[register])

BAD = [("malformed JSON", b'{"model": "quick_test", "messages": [', 400, None),
       ("no messages", {"messages": None}, 400, "messages"),
       ("messages not a list", {"messages": "hej"}, 400, "messages"),
       ("content of a wrong type", {"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
       ("max_tokens 0", {"max_tokens": 0}, 400, "max_tokens"),
       ("max_tokens too large", {"max_tokens": 10**6}, 400, "max_tokens"),
       ("temperature a string", {"temperature": "hot"}, 400, "temperature"),
       ("unknown model", {"model": "gpt-4o"}, 404, "model")]

@pytest.mark.parametrize("name,change,status,param", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_openai_errors_naming_the_field(server, name, change, status, param):
    url, _ = server
    if isinstance(change, bytes): kw = {"content": change, "headers": {"Content-Type": "application/json"}}
    else:
        body = {"model": client(url).models.list().data[0].id, "messages": [{"role": "user", "content": Q1}], **change}
        kw = {"json": {k: v for k, v in body.items() if v is not None}}            # None: the field left out
    r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}", **kw.pop("headers", {})},
                   timeout=60, **kw)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"] and err["param"] == param, err
    assert httpx.get(url + "/health", timeout=10).status_code == 200                 # and it keeps serving

def test_an_api_key_is_required_when_set(server):
    url, _ = server
    body = {"model": "x", "messages": [{"role": "user", "content": Q1}]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=60)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error", r.text
    assert httpx.get(url + "/v1/models", timeout=10).status_code == 401
    with pytest.raises(openai.AuthenticationError): openai.OpenAI(base_url=url + "/v1", api_key="wrong",
                                                                  max_retries=0).models.list()

def test_twenty_clients_at_once_are_all_answered(server):
    url, _ = server
    c = client(url)
    name, results = c.models.list().data[0].id, {}
    def ask(i):
        try: results[i] = c.chat.completions.create(model=name,
                                                    messages=[{"role": "user",
                                                               "content": f"Podaj liczbę mnogą słowa „dom” ({i})."}],
                                                    max_tokens=4, temperature=0).choices[0].message.content
        except Exception as e: results[i] = e
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
    for t in threads: t.start()
    for t in threads: t.join(timeout=600)
    errors = {i: r for i, r in results.items() if isinstance(r, Exception)}
    assert len(results) == 20 and not errors, errors

def test_a_client_that_leaves_mid_stream_stops_its_generation(server):
    url, _ = server
    name = client(url).models.list().data[0].id
    before = httpx.get(url + "/health", timeout=10).json()
    body = {"model": name, "prompt": "Polska to kraj w Europie Środkowej.", "max_tokens": 400, "min_tokens": 400,
            "stream": True}
    with httpx.stream("POST", url + "/v1/completions", json=body, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=600) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        got = [l for l, _ in zip((l for l in lines if l.startswith("data: ")), range(3))]   # three chunks, then hang up
    assert len(got) == 3
    t0 = time.time()
    while (h := httpx.get(url + "/health", timeout=10).json())["cancelled"] == before["cancelled"]:
        assert time.time() - t0 < 120, f"the generation was not stopped: {h}"
        time.sleep(0.2)
    # it ended as cancelled, not after its 400 tokens
    assert h["served"] == before["served"]
