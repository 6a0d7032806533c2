"""The README's picture of the chat page: ``python -m tests.helpers.screenshot [docs/images/dev-ui.png]``.

Starts the real server (echo model, a throw-away SQLite file, ``MEMORY_K=3`` so the window visibly
slides), holds a short conversation in headless Chromium as a user would, and saves a screenshot.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.helpers.browser import start_chromium
from tests.helpers.server import ROOT, Server

OUT = ROOT / "docs/images/dev-ui.png"
ACTOR = "ana"
EARLIER = {  # other sessions of the actor, so the list has something in it
    "weekend-plans": ["Let's plan the weekend", "Saturday: the museum"],
    "reading-list": ["Add 'The Left Hand of Darkness' to my list"],
}
MESSAGES = [
    "Hi, I am Ana and I am planning a trip to Oslo in May",
    "I would like to see the Munch museum",
    "Which islands can I reach by ferry?",
    "Book a table for Friday night",
    "What was I planning again?",
    "What did I plan for Saturday?",  # recalled from another session: the text shows under the reply
]


def take(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server({"DEV_UI": "on", "SESSION_DB": f"{tmp}/sessions.db", "MEMORY_K": "3"}).start()
        driver = None
        try:
            for session, messages in EARLIER.items():
                for message in messages:
                    server.invoke({"message": message, "actor_id": ACTOR, "session_id": session})
            driver = start_chromium(Path(tmp) / "profile")
            driver.set_window_size(1280, 900)
            driver.get(f"{server.url}/?actor={ACTOR}&session=oslo-trip")
            wait = WebDriverWait(driver, 30)
            for n, message in enumerate(MESSAGES, 1):
                box = driver.find_element(By.ID, "message")
                box.send_keys(message, Keys.ENTER)
                wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#log .turn.done")) >= n)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '.session[data-session="oslo-trip"]')
                       or not d.find_element(By.ID, "sessions-note").get_attribute("hidden"))
            out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(out))
        finally:
            if driver is not None:
                driver.quit()
            server.stop()


if __name__ == "__main__":
    take(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
    print(f"saved {sys.argv[1] if len(sys.argv) > 1 else OUT}")
