"""The chat page on the server's own port, driven in a real headless Chromium.

Debian's `chromium` and `chromium-driver` (.ci/run installs them), through selenium, against
the real server and the real model: a message streams and is stopped, a turn completes, the
thread is found again after a reload and through /v1/threads, renamed and deleted; a hostile
answer is shown as text; the API key is asked for once; a restarted server is waited out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from roost.threads.store import Store as ThreadStore
from tests.conftest import MODEL, Server, free_port, stop_server

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,900")
# What a model could be made to say; put in a thread by the API, since a 0.5b model cannot be
# made to say it reliably.
HOSTILE = ("Here you go:\n\n<img src=x onerror=\"window.__pwned=1\">\n\n"
           "<script>window.__pwned=2</script>\n\n[click me](javascript:window.__pwned=3)\n\n"
           "![tracker](http://203.0.113.9/pixel.png)\n\n```python\nprint('hi')\n```\n")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip("Debian's chromium and chromium-driver are not installed "
                "(apt-get install -y chromium chromium-driver; .ci/run does)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}")


def js(driver: Any, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def by_id(driver: Any, element_id: str) -> Any:
    return driver.find_element("id", element_id)


def open_page(driver: Any, url: str) -> None:
    driver.get(url + "/")
    wait_for(lambda: js(driver, "return document.querySelector('#model-select option') !== null"),
             what="the model list")


def send(driver: Any, text: str) -> None:
    box = by_id(driver, "prompt")
    box.clear()
    box.send_keys(text)
    by_id(driver, "send").click()


def set_option(driver: Any, name: str, value: str) -> None:
    js(driver, "document.getElementById('settings').open = true")
    field = driver.find_element("css selector", f"#options input[data-option='{name}']")
    field.clear()
    field.send_keys(value)


def last_answer(driver: Any) -> str:
    return str(js(driver, "const m = [...document.querySelectorAll('.msg.assistant')].pop();"
                          "return m ? m.querySelector('.body').innerText : ''"))


def csp_violations(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser")
            if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]


def keep_screenshot(driver: Any, path: Path) -> None:
    driver.save_screenshot(str(path))
    if artifacts := os.environ.get("ROOST_TEST_ARTIFACTS"):
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / path.name)


def messages_of(c: httpx.Client, thread_id: str) -> list[dict[str, Any]]:
    r = c.get(f"/v1/threads/{thread_id}/messages", params={"order": "asc", "limit": 100})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def test_root_is_a_status_line_for_scripts_and_the_page_for_browsers(server: Server) -> None:
    with server.client() as c:
        plain = c.get("/")
        assert plain.status_code == 200 and plain.text == "Roost is running"
        assert plain.headers["content-type"].startswith("text/plain")
        page = c.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        assert page.status_code == 200 and "<script type=\"module\" src=\"/web/js/main.js\">" in page.text
        csp = page.headers["content-security-policy"]
        for rule in ("default-src 'self'", "script-src 'self'", "style-src 'self'",
                     "img-src 'self' data:", "connect-src 'self'", "frame-ancestors 'none'"):
            assert rule in csp
        assert "http" not in csp and "unsafe" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        script = c.get("/web/js/main.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert c.get("/web/vendor/purify.es.mjs").status_code == 200
        for bad in ("/web/../server/web.py", "/web/%2e%2e/__init__.py", "/web/js/.hidden.js",
                    "/web/vendor/marked.LICENSE.md", "/web/nothing.js", "/web/"):
            assert c.get(bad).status_code == 404, bad


def test_chat_streams_stops_and_keeps_the_thread(pulled: Server, browser: Any, tmp_path: Path) -> None:
    driver = browser
    open_page(driver, pulled.url)
    js(driver, "const s = document.getElementById('model-select'); s.value = arguments[0];"
               "s.dispatchEvent(new Event('change'))", MODEL)
    set_option(driver, "temperature", "0")
    set_option(driver, "num_predict", "400")
    question = "Count from 1 to 300, one number per line."
    send(driver, question)
    wait_for(lambda: last_answer(driver), 90, "the answer to start")
    samples: set[int] = set()

    def grew() -> bool:
        samples.add(len(last_answer(driver)))
        return len(samples) >= 3
    wait_for(grew, 30, "the answer to grow as it streams")
    assert js(driver, "return document.querySelector('.msg.assistant.streaming') !== null")
    by_id(driver, "stop").click()
    wait_for(lambda: by_id(driver, "send").is_displayed(), 10, "the turn to stop")
    stopped = last_answer(driver)
    assert "(stopped)" in js(driver, "return [...document.querySelectorAll('.msg.assistant')].pop()"
                                     ".textContent")
    thread_id = wait_for(lambda: js(driver, "return document.querySelector('#thread-list li.active')"
                                            "?.dataset.id"), 10, "the new thread in the list")

    set_option(driver, "num_predict", "8")
    send(driver, "Say hello.")
    wait_for(lambda: by_id(driver, "send").is_displayed() and len(js(
        driver, "return document.querySelectorAll('.msg.assistant')")) == 2, 60, "the second answer")

    with pulled.client() as c:
        wait_for(lambda: len(messages_of(c, thread_id)) == 4, 10, "both turns stored")
        msgs = messages_of(c, thread_id)
        assert [(m["role"], m["status"]) for m in msgs] == [
            ("user", "completed"), ("assistant", "incomplete"), ("user", "completed"),
            ("assistant", "completed")]
        assert msgs[0]["content"][0]["text"]["value"] == question
        assert msgs[1]["content"][0]["text"]["value"].split() == stopped.split()  # what was shown
        thread = c.get(f"/v1/threads/{thread_id}").json()
        assert thread["title"] == question and thread["model"] == MODEL

    open_page(driver, pulled.url)  # a reload: the page keeps nothing of its own
    item = wait_for(lambda: driver.find_elements("css selector", f"li[data-id='{thread_id}']"), 10)[0]
    assert item.find_element("css selector", ".thread-open").text == question
    item.find_element("css selector", ".thread-open").click()
    wait_for(lambda: len(driver.find_elements("css selector", ".msg")) == 4, 10, "the thread's messages")
    assert driver.find_elements("css selector", ".msg.user")[0].text == question
    keep_screenshot(driver, tmp_path / "web-chat.png")

    item.find_element("css selector", ".thread-rename").click()
    title = driver.find_element("css selector", f"li[data-id='{thread_id}'] .thread-title-input")
    title.send_keys("Counting\n")  # the old title is selected: typing replaces it
    with pulled.client() as c:
        wait_for(lambda: c.get(f"/v1/threads/{thread_id}").json()["title"] == "Counting", 10, "rename")
        delete = driver.find_element("css selector", f"li[data-id='{thread_id}'] .thread-delete")
        delete.click()
        delete.click()  # the second click confirms
        wait_for(lambda: c.get(f"/v1/threads/{thread_id}").status_code == 404, 10, "delete")
    wait_for(lambda: not driver.find_elements("css selector", f"li[data-id='{thread_id}']"), 10,
             "the deleted thread to leave the list")
    assert driver.find_elements("css selector", ".msg") == []  # the open thread was the deleted one
    assert csp_violations(driver) == []


def test_hostile_output_is_shown_as_text(pulled: Server, browser: Any, tmp_path: Path) -> None:
    driver = browser
    with pulled.client() as c:
        thread_id = c.post("/v1/threads", json={"title": "hostile", "model": MODEL}).json()["id"]
        c.post(f"/v1/threads/{thread_id}/messages", json={"role": "user", "content": "show me"})
        r = c.post(f"/v1/threads/{thread_id}/messages", json={"role": "assistant", "content": HOSTILE})
        assert r.status_code == 200, r.text
    open_page(driver, pulled.url)
    driver.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": pulled.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    wait_for(lambda: driver.find_elements("css selector", f"li[data-id='{thread_id}']"), 10)[0] \
        .find_element("css selector", ".thread-open").click()
    wait_for(lambda: "Here you go" in last_answer(driver), 10, "the hostile message")
    answer = driver.find_elements("css selector", ".msg.assistant")[-1]

    assert js(driver, "return window.__pwned") is None
    assert '<img src=x onerror="window.__pwned=1">' in answer.text  # shown, not run
    assert "<script>window.__pwned=2</script>" in answer.text
    assert js(driver, "return document.querySelectorAll('#messages img, #messages script,"
                      " #messages iframe').length") == 0
    link = answer.find_element("link text", "click me")
    assert link.get_attribute("href") is None
    link.click()
    assert js(driver, "return window.__pwned") is None
    assert "[image: tracker]" in answer.text

    copy = answer.find_element("css selector", "pre .copy")
    copy.click()
    wait_for(lambda: copy.text == "Copied", 5, "the copy button")
    copied = driver.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('error: ' + e))")
    assert copied.strip() == "print('hi')"
    keep_screenshot(driver, tmp_path / "web-hostile.png")
    assert csp_violations(driver) == []


def test_a_preset_fills_the_settings(pulled: Server, browser: Any) -> None:
    driver = browser
    with pulled.client() as c:
        r = c.put("/v1/presets/web-terse", json={"system": "Answer in one word.",
                                                 "options": {"temperature": 0.2, "num_predict": 5,
                                                             "stop": ["\n"]}})
        assert r.status_code == 200, r.text
    open_page(driver, pulled.url)
    wait_for(lambda: driver.find_elements("css selector", "#preset-select option[value='web-terse']"),
             10, "the preset in the list")
    js(driver, "const s = document.getElementById('preset-select'); s.value = 'web-terse';"
               "s.dispatchEvent(new Event('change'))")
    wait_for(lambda: by_id(driver, "system").get_attribute("value") == "Answer in one word.", 10)
    field = driver.find_element("css selector", "#options input[data-option='num_predict']")
    assert field.get_attribute("value") == "5"


def serve_on(home: Path, port: int, key: str) -> Server:
    """A server on a port the test chose, so a restart comes back where the page looks."""
    env = {**os.environ, "ROOST_HOST": f"127.0.0.1:{port}", "ROOST_HOME": str(home),
           "ROOST_API_KEY": key}
    log = home / "test-server.log"
    home.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "roost", "serve"], env=env, stdout=out,
                                stderr=out, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/api/version", timeout=1).status_code == 200
        except httpx.TransportError:
            return proc.poll() is not None
    wait_for(up, 30, "the server")
    assert proc.poll() is None, log.read_text()
    return Server(url, f"127.0.0.1:{port}", home, proc, log)


def test_api_key_pull_and_a_server_restart(browser: Any, tmp_path: Path) -> None:
    driver, port, key = browser, free_port(), "page-secret"
    auth = {"Authorization": f"Bearer {key}"}
    srv = serve_on(tmp_path / "home", port, key)
    try:
        with srv.client() as c:
            c.headers.update(auth)
            first = c.post("/v1/threads", json={"title": "before the restart"}).json()["id"]
        driver.get(srv.url + "/")
        js(driver, "sessionStorage.clear(); localStorage.clear()")
        driver.refresh()
        wait_for(lambda: by_id(driver, "key-overlay").is_displayed(), 10, "the key form")
        by_id(driver, "key-input").send_keys(key + "\n")
        wait_for(lambda: driver.find_elements("css selector", f"li[data-id='{first}']"), 10,
                 "the threads, with the key")

        js(driver, "window.__progress = []; new MutationObserver(() => window.__progress.push("
                   "document.getElementById('pull-progress').value)).observe("
                   "document.getElementById('pull-progress'), {attributes: true});")
        by_id(driver, "pull-name").send_keys(MODEL + "\n")
        wait_for(lambda: by_id(driver, "pull-status").text.endswith("success"), 60, "the pull")
        assert js(driver, "return document.getElementById('model-select').value") == MODEL
        assert max(js(driver, "return window.__progress")) > 0  # the bar moved

        stop_server(srv)
        wait_for(lambda: by_id(driver, "notice").is_displayed(), 15, "the 'not answering' notice")
        # A thread written while the server was down (as `roost chat` beside another server
        # would), so the page can only know it from the list it reloads on reconnecting.
        second = ThreadStore(tmp_path / "home" / "roost.db").create_thread("while it was down").id
        srv = serve_on(tmp_path / "home", port, key)
        wait_for(lambda: not by_id(driver, "notice").is_displayed(), 20, "the notice to clear")
        wait_for(lambda: driver.find_elements("css selector", f"li[data-id='{second}']"), 20,
                 "the thread list, reloaded after the restart")
        assert not by_id(driver, "key-overlay").is_displayed()  # the key was kept
    finally:
        stop_server(srv)
