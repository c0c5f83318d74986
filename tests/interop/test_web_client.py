"""The web client Corvid bundles (Converse.js, pinned in web/package.json) in a real headless
Chromium, driven by Playwright: the page at `/` loads everything from Corvid itself, logs in
over WebSocket (RFC 7395), chats with a slixmpp peer both ways and joins a room the peer is
in. A screenshot of the logged-in page is written to target/interop/web-client.png (the one
in docs/ is a copy from such a run).

Needs Debian's chromium (scripts/test.sh installs it) and `npm ci --prefix web` (done here
when the files are missing)."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.async_api import Page, async_playwright, expect

from interop_support import DOMAIN, befriend, is_message, is_presence, unique_name

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
DIST = WEB / "node_modules" / "converse.js" / "dist"
SCREENSHOT = REPO / "target" / "interop" / "web-client.png"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
WAIT_MS = 15_000
expect.set_options(timeout=WAIT_MS)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Debian's chromium is needed (apt-get install chromium)"
    return found


@pytest.fixture(scope="module")
def converse_installed():
    if not (DIST / "converse.min.js").is_file():
        subprocess.run(["npm", "ci", "--prefix", str(WEB), "--no-audit", "--no-fund", "--ignore-scripts"],
                       check=True, capture_output=True)
    assert (DIST / "converse.min.js").is_file()


@pytest.fixture
async def page(converse_installed):
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.hosts_answered = set()
        page.on("response", lambda r: page.hosts_answered.add(urlparse(r.url).hostname))
        yield page
        await browser.close()


async def log_in(page: Page, server, user: str, password: str) -> None:
    await page.goto(f"http://127.0.0.1:{server.http_port}/")
    # The domain is locked to the server's: the user types only the name.
    await page.fill("#converse-login-jid", user)
    await page.fill("#converse-login-password", password)
    await page.click("button[type=submit]")
    await expect(page.locator(".controlbox-section .xmpp-status, converse-user-profile").first).to_be_visible()


async def test_converse_logs_in_over_websocket_and_chats_with_a_slixmpp_peer(server, im, page):
    juliet = await im.user(server, "juliet")
    romeo = await im.user(server, "romeo")
    await befriend(juliet, romeo)
    password = juliet.account_password
    await juliet.close()

    await log_in(page, server, juliet.bare.split("@")[0], password)
    # Romeo is in her roster: open the chat from there and write to him.
    contact = page.locator("converse-roster a.open-chat", has_text=romeo.bare)
    await contact.click()
    textarea = page.locator("converse-chat textarea.chat-textarea")
    await textarea.fill("Wherefore art thou?")
    await textarea.press("Enter")
    got = await romeo.inbox.expect(is_message(from_bare=juliet.bare, body="Wherefore art thou?"),
                                   "juliet's message from the browser")
    sender = str(got["from"])
    assert sender.startswith(f"{juliet.bare}/")

    romeo.message(sender, "Here, in the garden.")
    await expect(page.locator("converse-chat .chat-msg__text", has_text="Here, in the garden.")).to_be_visible()

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT))
    # Everything the page loaded came from Corvid itself (Converse's sponsor logos on the
    # login page are blocked by the page's Content-Security-Policy).
    assert page.hosts_answered == {"127.0.0.1"}, page.hosts_answered


async def test_converse_joins_a_room_and_talks_in_it(server, im, page):
    juliet_jid, password = server.new_account("juliet")
    romeo = await im.user(server, "romeo")
    room = f"{unique_name('balcony')}@conference.{DOMAIN}"
    romeo.presence(to=f"{room}/romeo", extra=[ET.Element(f"{{{NS_MUC}}}x")])
    await romeo.inbox.expect(is_presence(frm=f"{room}/romeo"), "romeo in the room he made")
    # An instant room (XEP-0045 §10.1.2): the default configuration, accepted as it is.
    owner = ET.Element(f"{{{NS_MUC_OWNER}}}query")
    ET.SubElement(owner, "{jabber:x:data}x", {"type": "submit"})
    await romeo.query("set", owner, to=room)

    await log_in(page, server, juliet_jid.split("@")[0], password)
    # A link to the room (Converse's own route for it), as a user would follow one.
    await page.evaluate(f"location.hash = '#converse/room?jid={room}'")
    # Converse asks for a nickname first (unless it knows one), then shows the room.
    nick = page.locator("converse-muc").get_by_role("textbox", name="Nickname")
    chat_area = page.locator("converse-muc textarea.chat-textarea")
    await expect(nick.or_(chat_area)).to_be_visible()
    if await nick.is_visible():
        await nick.fill("juliet")
        await page.locator("converse-muc").get_by_role("button", name="Enter groupchat").click()
    await romeo.inbox.expect(is_presence(frm=f"{room}/juliet"), "juliet coming into the room")
    await expect(chat_area).to_be_visible()
    await chat_area.fill("Good night, good night!")
    await chat_area.press("Enter")
    await romeo.inbox.expect(is_message(frm=f"{room}/juliet", body="Good night, good night!"),
                             "juliet's groupchat message")
    romeo.message(room, "Parting is such sweet sorrow", mtype="groupchat")
    await expect(page.locator("converse-muc .chat-msg__text", has_text="Parting is such sweet sorrow")).to_be_visible()
