"""The development chat page (``ui/static``), in a real headless Chromium against the real server.

The server is ``python agent.py`` with the echo model (it answers ``You said '<message>'`` a word per
delta), so what the page shows can be asserted exactly. Each test is its own actor.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError
from core.settings import Settings
from tests.helpers.browser import require_chromium, start_chromium
from tests.helpers.busy_session import busy_capable_server, busy_session
from tests.helpers.server import ROOT, Server, free_port

WAIT_S = 30  # the longest a step may take on a busy machine; no assertion is about time


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


# -- served only when DEV_UI is on ---------------------------------------------------------------

def test_dev_ui_is_off_unless_set_and_a_bad_value_names_the_variable() -> None:
    assert Settings.from_env({}).dev_ui is False
    assert Settings.from_env({"DEV_UI": "on"}).dev_ui is True
    assert Settings.from_env({"DEV_UI": "off"}).dev_ui is False
    with pytest.raises(ConfigError, match="DEV_UI='maybe' is not one of on, off"):
        Settings.from_env({"DEV_UI": "maybe"})


def test_without_dev_ui_the_server_serves_no_page(tmp_path: Path) -> None:
    server = Server({"SESSION_DB": str(tmp_path / "s.db")}).start()
    try:
        assert get(f"{server.url}/")[0] == 404
        assert get(f"{server.url}/static/app.js")[0] == 404
        assert server.invoke({"message": "hi"})[0] == 200  # the runtime's routes are unchanged
    finally:
        server.stop()


def test_the_container_image_never_serves_the_page() -> None:
    dockerfile = (ROOT / ".bedrock_agentcore/session_assistant_container/Dockerfile").read_text()
    assert re.search(r"^\s+DEV_UI=off\b", dockerfile, re.MULTILINE)
    assert re.search(r"^run: .*\n(\t.*\n)*\tDEV_UI=\$\$\{DEV_UI:-on\} \$\(PY\) agent\.py", (ROOT / "Makefile").read_text(),
                     re.MULTILINE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``MEMORY_K=3``: the window slides, and the rolling summary starts, within a short conversation."""
    directory = tmp_path_factory.mktemp("ui")
    server = Server({"DEV_UI": "on", "MEMORY_K": "3", "SESSION_DB": str(directory / "sessions.db")},
                    log_path=directory / "server.log").start()
    yield server
    server.stop()


def test_the_start_up_log_says_where_the_page_is(server: Server) -> None:
    assert f"DEV_UI=on | the chat page: http://127.0.0.1:{server.port}/" in server.log()


def test_the_page_and_its_files_come_from_this_server_only(server: Server) -> None:
    status, headers, body = get(f"{server.url}/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in headers["content-security-policy"]  # the browser loads nothing from elsewhere
    page = body.decode()
    references = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert set(references) == {"/static/app.css", "/static/app.js", "data:,"}
    for path, kind in (("/static/app.js", "javascript"), ("/static/app.css", "text/css")):
        status, headers, body = get(f"{server.url}{path}")
        assert status == 200 and kind in headers["content-type"]
        assert "default-src 'self'" in headers["content-security-policy"]
        assert not re.search(rb"https?://", body), f"{path} names another host"


# -- in the browser -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_chromium()
    driver = start_chromium(tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()


class Page:
    """The chat page in the browser, with the few moves a user makes."""

    def __init__(self, driver: Any, url: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.url, self.by = driver, url, By
        from selenium.common.exceptions import StaleElementReferenceException

        # a wait that reads a list the page is re-rendering meets elements just replaced: read again
        self.wait = WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))

    def open(self, actor: str, session: str | None = None) -> Page:
        query = f"?actor={actor}" + (f"&session={session}" if session else "")
        self.driver.get(f"{self.url}/{query}")
        # the session is shown and its history read (the log is aria-busy while it loads)
        self.wait.until(lambda d: self.text("session-id") and self.find("#log").get_attribute("aria-busy") is None)
        return self

    def find(self, css: str) -> Any:
        return self.driver.find_element(self.by.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        return self.driver.find_elements(self.by.CSS_SELECTOR, css)

    def text(self, element_id: str) -> str:
        return self.driver.find_element(self.by.ID, element_id).text

    def type_and_enter(self, message: str) -> None:
        from selenium.webdriver.common.keys import Keys

        box = self.find("#message")
        if message:
            box.send_keys(message)
        box.send_keys(Keys.ENTER)  # keyboard submit: no click on Send

    def say(self, message: str) -> Any:
        """Send ``message`` and wait for its turn to finish (replied or failed); that turn's element."""
        before = len(self.all("#log .turn"))
        self.type_and_enter(message)
        self.wait.until(lambda d: len(self.all("#log .turn")) > before
                        and self.all("#log .turn")[before].get_attribute("aria-busy") is None)
        return self.all("#log .turn")[before]

    def reply_of(self, turn: Any) -> str:
        return turn.find_element(self.by.CSS_SELECTOR, ".msg.assistant .text").text

    def session(self) -> str:
        return self.text("session-id")

    def actor(self) -> str:
        return self.find("#actor").get_attribute("value")

    def turns(self) -> list[Any]:
        return self.all("#log .turn")

    def memory_of(self, turn: Any) -> str:
        """The turn's "What memory gave the model" box, one line per part."""
        return turn.find_element(self.by.CSS_SELECTOR, ".memory-box").text

    def listed_session(self, session: str) -> Any:
        """The session's entry in the Sessions list, once it is there."""
        self.wait.until(lambda d: self.all(f'.session[data-session="{session}"]'))
        return self.find(f'.session[data-session="{session}"]')


@pytest.fixture
def page(browser: Any, server: Server) -> Page:
    browser.set_window_size(1280, 860)
    return Page(browser, server.url).open(f"ui-{uuid.uuid4().hex[:10]}")


def test_two_messages_stream_their_replies_into_one_session(page: Page, server: Server) -> None:
    first = page.say("hello from the page")
    assert page.reply_of(first) == "You said 'hello from the page'"
    # the reply arrived in pieces (a word per delta) and was shown as it came
    assert int(first.find_element(page.by.CSS_SELECTOR, ".msg.assistant .text").get_attribute("data-deltas")) > 1
    assert "turn 1 · 0 earlier turns in context" in first.text
    second = page.say("and a second one")
    assert page.reply_of(second) == "You said 'and a second one'"
    assert "turn 2 · 1 earlier turn in context" in second.text
    assert page.find("#message").get_attribute("value") == ""
    # the turns are stored in the session the page shows, under the page's actor
    actor = page.find("#actor").get_attribute("value")
    status, body = server.invoke({"message": "third", "actor_id": actor, "session_id": page.session()})
    assert (status, body["message_count"], body["history_length"]) == (200, 3, 2)


def test_shift_enter_starts_a_new_line_instead_of_sending(page: Page) -> None:
    from selenium.webdriver.common.keys import Keys

    box = page.find("#message")
    box.send_keys("line one")
    box.send_keys(Keys.SHIFT, Keys.ENTER)
    box.send_keys("line two")
    assert page.all("#log .turn") == []
    box.send_keys(Keys.ENTER)
    page.wait.until(lambda d: page.all("#log .turn.done"))
    assert page.reply_of(page.all("#log .turn")[0]) == "You said 'line one\nline two'"


def test_user_and_model_text_is_shown_as_text_never_as_markup(page: Page) -> None:
    turn = page.say('<b id="injected">bold</b><img src=x onerror="document.title=\'owned\'">')
    assert page.all("#injected") == [] and page.all("#log img") == []
    assert page.driver.title != "owned"
    assert page.reply_of(turn).startswith("You said '<b id=\"injected\">bold</b>")


def test_a_new_session_starts_empty_and_the_old_one_keeps_its_turns(page: Page, server: Server) -> None:
    page.say("in the first session")
    first = page.session()
    page.find("#new-session").click()
    page.wait.until(lambda d: page.session() != first)
    assert page.all("#log .turn") == []
    turn = page.say("in the second session")
    assert "turn 1 · 0 earlier turns in context" in turn.text
    actor = page.find("#actor").get_attribute("value")
    assert server.invoke({"message": "back", "actor_id": actor, "session_id": first})[1]["message_count"] == 2


def test_switching_the_actor_gives_another_persons_conversation(page: Page, server: Server) -> None:
    page.say("I am the first actor")
    session = page.session()
    actor = f"other-{uuid.uuid4().hex[:8]}"
    box = page.find("#actor")
    box.clear()
    box.send_keys(actor + "\n")  # Enter submits the actor form too
    page.wait.until(lambda d: page.session() != session)
    assert f"actor={actor}" in page.driver.current_url
    turn = page.say("who am I")
    assert "turn 1 · 0 earlier turns in context" in turn.text
    status, body = server.invoke({"message": "x", "actor_id": actor, "session_id": page.session()})
    assert body["message_count"] == 2


def test_summarise_shows_the_summary_and_clear_empties_the_session(page: Page, server: Server) -> None:
    page.say("my door is blue")
    page.say("my cat is called Tom")
    page.find("#summarize").click()
    page.wait.until(lambda d: "Summary written" in page.text("status"))
    assert "my door is blue" in page.text("summary-text")  # the echo model repeats what it summarises
    page.find("#clear").click()
    page.driver.switch_to.alert.accept()  # "Delete every message of session ...?"
    page.wait.until(lambda d: "Cleared" in page.text("status"))
    assert "2 messages deleted" in page.text("status")
    assert page.all("#log .turn") == []
    actor = page.find("#actor").get_attribute("value")
    status, body = server.invoke({"message": "again", "actor_id": actor, "session_id": page.session()})
    assert (body["message_count"], body["history_length"]) == (1, 0)


def test_declining_the_clear_confirmation_keeps_the_session(page: Page, server: Server) -> None:
    page.say("keep me")
    page.find("#clear").click()
    page.driver.switch_to.alert.dismiss()
    actor = page.find("#actor").get_attribute("value")
    assert server.invoke({"message": "still", "actor_id": actor, "session_id": page.session()})[1]["message_count"] == 2


def test_every_control_has_a_label(page: Page) -> None:
    for control in page.all("input, textarea"):
        control_id = control.get_attribute("id")
        labels = page.all(f'label[for="{control_id}"]')
        wrapped = page.driver.execute_script("return arguments[0].closest('label') !== null", control)
        assert labels or wrapped, f"#{control_id} has no label"
    for button in page.all("button"):
        assert button.get_attribute("textContent").strip(), "a button without a name"


def test_at_360_px_wide_nothing_scrolls_sideways(page: Page) -> None:
    page.driver.set_window_size(360, 740)
    assert page.driver.execute_script("return window.innerWidth") == 360
    page.say("a-very-long-word-without-any-space-" * 6)
    width = page.driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the page is {width[0]} px wide in a {width[1]} px window"
    for element_id in ("message", "send", "new-session", "summarize", "clear", "actor"):
        element = page.driver.find_element(page.by.ID, element_id)
        right = page.driver.execute_script("return arguments[0].getBoundingClientRect().right", element)
        assert element.is_displayed() and right <= 360, f"#{element_id} is off screen"


def test_each_reply_shows_which_turns_and_summary_memory_gave_the_model(page: Page) -> None:
    replies = [page.say(f"message number {n}") for n in range(1, 6)]
    assert page.memory_of(replies[0]).splitlines()[1:] == [
        "window: no earlier turn", "summary: none", "long-term: nothing recalled"]
    assert "window: turn 1\n" in page.memory_of(replies[1]) + "\n"
    assert "window: turns 1, 2" in page.memory_of(replies[2])
    assert "window: turns 1–3" in page.memory_of(replies[3])
    fifth = page.memory_of(replies[4])  # MEMORY_K=3: turn 1 has left the window for the rolling summary
    # folded after the replies, one turn early: through turn 1 after turn 3, through 2 after turn 4 (if done by now)
    assert "window: turns 2–4" in fifth and re.search(r"summary: turns 1–[12]\n", fifth + "\n")
    links = replies[4].find_elements(page.by.CSS_SELECTOR, ".memory-box a")
    assert [a.get_attribute("href").split("#")[1] for a in links] == ["turn-2", "turn-4"]
    links[0].click()  # the turn it names, in the log
    assert page.driver.execute_script("return document.querySelector(':target').id") == "turn-2"
    page.wait.until(lambda d: "turns 1" in page.text("summary-text"))  # the panel shows the new rolling summary
    page.find("#explain").click()  # off: the reply comes without the box
    quiet = page.say("no box for this one")
    assert quiet.find_elements(page.by.CSS_SELECTOR, ".memory-box") == []
    assert "turn 6 · 3 earlier turns in context" in quiet.text


def test_a_conversation_is_found_again_after_leaving_and_coming_back(page: Page) -> None:
    page.say("I am planning a trip to Oslo")
    page.say("in May")
    session, actor = page.session(), page.actor()
    page.driver.get(f"{page.url}/?actor={actor}")  # come back later: a fresh page, a new session
    page.wait.until(lambda d: page.session() != session)
    entry = page.listed_session(session)
    assert "2 messages" in entry.text and "I am planning a trip to Oslo" in entry.text
    entry.click()
    page.wait.until(lambda d: len(page.turns()) == 2)
    first, second = page.turns()
    assert "You · turn 1" in first.text and "I am planning a trip to Oslo" in first.text
    assert page.reply_of(second) == "You said 'in May'"
    assert f"session={session}" in page.driver.current_url
    page.driver.refresh()  # a reload (or the link) reopens it with its history
    page.wait.until(lambda d: len(page.turns()) == 2)
    assert page.listed_session(session).get_attribute("aria-current") == "true"
    third = page.say("what was I planning?")
    assert "turn 3 · 2 earlier turns in context" in third.text
    assert "window: turns 1, 2" in page.memory_of(third)


FACT = "My daughter Ingrid plays the cello"


def remembered(page: Page) -> dict[str, str]:
    """The "What is remembered" panel: text -> record id, per listed record."""
    # read in one script: the panel re-renders after a delete, and element by element a read could meet half of it
    rows = page.driver.execute_script(
        "return [...document.querySelectorAll('#memory-list .memory-item')]"
        ".map(item => [item.querySelector('.text').innerText, item.getAttribute('data-record-id')]);")
    return {text: record_id for text, record_id in rows}


def test_a_reply_shows_the_recalled_text_and_a_memory_deleted_in_the_panel_is_not_recalled_again(
        page: Page, server: Server) -> None:
    actor = page.actor()
    page.say("Hello there")  # the actor has records: the fact's search embeds it, and its record keeps that vector
    page.say(FACT)
    page.wait.until(lambda d: FACT in remembered(page))  # the panel lists what is remembered, newest first
    assert list(remembered(page))[:2] == [f"You said '{FACT}'", FACT]
    page.find("#new-session").click()
    page.wait.until(lambda d: not page.turns())
    asked = page.say("What instrument does my daughter play?")
    recalled = asked.find_elements(page.by.CSS_SELECTOR, ".memory-box li.recalled")
    assert FACT in [r.find_element(page.by.CSS_SELECTOR, ".recalled-text").text for r in recalled]
    assert "user, session" in page.memory_of(asked) and "turn 2 · score" in page.memory_of(asked)

    doomed = remembered(page)[FACT]
    item = page.find(f'#memory-list .memory-item[data-record-id="{doomed}"]')
    item.find_element(page.by.CSS_SELECTOR, "button.delete").click()
    page.wait.until(lambda d: FACT not in remembered(page))
    assert "Deleted one memory" in page.text("status")
    status, listed = server.invoke({"action": "list_memories", "actor_id": actor, "limit": 100})
    assert status == 200 and doomed not in {m["record_id"] for m in listed["memories"]}  # deleted on the server
    again = page.say("Which instrument does my daughter Ingrid play?")
    ids = [r.get_attribute("data-record-id")
           for r in again.find_elements(page.by.CSS_SELECTOR, ".memory-box li.recalled")]
    assert doomed not in ids  # before the delete this question recalled it (above); now it never is


def test_the_memory_panel_shows_another_actors_memories_only_after_switching(page: Page, server: Server) -> None:
    other = f"ui-{uuid.uuid4().hex[:10]}"
    assert server.invoke({"message": "I collect stamps from Chile", "actor_id": other, "session_id": "x"})[0] == 200
    page.say("I collect stamps from Norway")
    page.wait.until(lambda d: "I collect stamps from Norway" in remembered(page))
    assert "I collect stamps from Chile" not in remembered(page)
    page.find("#actor").clear()
    page.find("#actor").send_keys(other, "\n")
    page.wait.until(lambda d: "I collect stamps from Chile" in remembered(page))
    assert "I collect stamps from Norway" not in remembered(page)


def test_long_histories_and_many_sessions_page_back(page: Page, server: Server) -> None:
    actor = page.actor()
    for n in range(1, 56):
        assert server.invoke({"message": f"turn {n} of a long one", "actor_id": actor, "session_id": "long"})[0] == 200
    for n in range(1, 22):
        assert server.invoke({"message": "short", "actor_id": actor, "session_id": f"short-{n}"})[0] == 200
    page.open(actor, "long")
    page.wait.until(lambda d: len(page.turns()) == 50)  # the newest page of the history
    assert "turn 55 of a long one" in page.turns()[-1].text and "You · turn 6" in page.turns()[0].text
    page.find("#older").click()
    page.wait.until(lambda d: len(page.turns()) == 55)
    assert "You · turn 1" in page.turns()[0].text and not page.find("#older").is_displayed()
    page.wait.until(lambda d: len(page.all(".session")) == 20)  # newest first: "long" is on the next page
    assert page.all('.session[data-session="long"]') == []
    page.find("#more-sessions").click()
    page.listed_session("long")
    assert len(page.all(".session")) == 22 and not page.find("#more-sessions").is_displayed()


# -- errors --------------------------------------------------------------------------------------

def test_a_store_outage_shows_the_error_and_keeps_the_message(browser: Any, tmp_path: Path) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    server = Server({"DEV_UI": "on", "MEMORY_BACKEND": "redis", "REDIS_URL": dead_redis}).start()
    try:
        browser.set_window_size(1280, 860)
        page = Page(browser, server.url).open("outage")
        turn = page.say("does this get stored")
        assert "failed" in turn.get_attribute("class")
        assert "Unavailable for now" in page.text("status") and "redis" in page.text("status")
        assert "Nothing of this turn was stored" in turn.text
        assert page.find("#message").get_attribute("value") == "does this get stored"  # ready to send again
        assert page.find("#send").is_enabled()
    finally:
        server.stop()


def test_a_busy_session_says_when_to_retry_and_the_retry_works(browser: Any, tmp_path: Path) -> None:
    with busy_capable_server(tmp_path) as (server, redis):
        browser.set_window_size(1280, 860)
        page = Page(browser, server.url).open("busy", "held")
        with busy_session(server, redis, "busy", "held"):
            turn = page.say("are you free")
            assert "failed" in turn.get_attribute("class")
            assert re.search(r"This session is busy .* Try again in \d+ s\.", page.text("status"))
            assert page.find("#message").get_attribute("value") == "are you free"
        page.type_and_enter("")  # the message is still in the box: Enter sends it again
        page.wait.until(lambda d: page.all("#log .turn.done"))
        assert page.reply_of(page.all("#log .turn.done")[0]) == "You said 'are you free'"
