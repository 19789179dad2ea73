"""Drive Debian's headless chromium (Selenium + the system chromedriver) against the search
page. Selenium never downloads a browser or driver here: both executables are given.

Also a command line, which made docs/serve.png from the demo run:
    python -m tests.browser --index IDX --image QUERY.jpg -o docs/serve.png
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import threading
import time
from pathlib import Path


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) executables, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def running_server(app):
    """Serve ``app`` with uvicorn on 127.0.0.1 at a free port, in a thread; yields the URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def headless_chromium(width: int = 1280, height: int = 860):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never fetch anything
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:  # make the page area (what a screenshot shows) width x height
        iw, ih = session.execute_script("return [window.innerWidth, window.innerHeight]")
        session.set_window_size(2 * width - iw, 2 * height - ih)
        yield session
    finally:
        session.quit()


def search_page(session, url: str, image: Path, k: int | None = None, timeout: float = 60):
    """Open the page, upload ``image`` (optionally choose k first) and wait for the results;
    returns [(rank, file name, thumbnail natural width)] as the page shows them."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    session.get(url + "/")
    wait = WebDriverWait(session, timeout)
    wait.until(lambda s: "gallery of" in s.find_element(By.ID, "info").text)
    if k is not None:
        Select(session.find_element(By.ID, "k")).select_by_visible_text(str(k))
    session.find_element(By.ID, "file").send_keys(str(Path(image).resolve()))
    wait.until(lambda s: s.find_elements(By.CSS_SELECTOR, "#results .card"))
    wait.until(  # every thumbnail (and the restoration, when shown) has loaded
        lambda s: s.execute_script(
            "return [...document.images].filter(i => !i.hidden && i.src)"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
    )
    return session.execute_script(
        "return [...document.querySelectorAll('#results .card')].map(c => "
        "[Number(c.dataset.rank), c.dataset.name, c.querySelector('img').naturalWidth])"
    )


def page_text(session, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return session.find_element(By.ID, element_id).text


def wait_for_text(session, element_id: str, text: str, timeout: float = 30) -> str:
    """The element's text once it contains ``text``."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(session, timeout).until(lambda s: text in page_text(s, element_id))
    return page_text(session, element_id)


def main() -> None:
    from sjdl.retrieval import Gallery
    from sjdl.retrieval.server import create_app

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--image", required=True, type=Path)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("-o", "--output", type=Path, default=Path("serve.png"))
    ap.add_argument("--height", type=int, default=660, help="Page height in pixels.")
    args = ap.parse_args()
    if chromium_paths() is None:
        raise SystemExit("chromium and chromedriver are needed: apt-get install chromium-driver")
    gallery = Gallery.open(args.index)
    gallery.search(args.image)  # warm up, so that the page shows a typical search time
    app = create_app(gallery)
    with running_server(app) as url, headless_chromium(height=args.height) as session:
        cards = search_page(session, url, args.image, args.k)
        time.sleep(0.5)
        session.save_screenshot(str(args.output))
    print(f"{args.output}: {len(cards)} matches, first {cards[0][1]}")


if __name__ == "__main__":
    main()
