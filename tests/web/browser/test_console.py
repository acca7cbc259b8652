"""An officer's review in a real browser (headless Debian Chromium through Playwright), on a
recording made by the real pipeline: signed webhooks, the simulator over real WebSockets, a
Contact Center call with 1 s segments, transcripts and a media drop that leaves a known gap.

The console (``recorder web``'s app on hypercorn/trio) serves it on loopback; the browser signs
in, searches, opens the recording, gives a reason, sees the gap drawn as a region labelled with
its cause at its time, plays and seeks (range requests answered 206), follows the transcript,
verifies, places and releases a hold, downloads the signed bundle (checked with
``recorder verify-export``), and finds every action in the audit page under its own name.
Playwright's synchronous API runs in a worker thread while trio serves the console.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio

from recorder.officer.bundle.commands import default_signing_key
from recorder.officer.bundle.signing import generate_signing_key, load_signing_key, public_bytes
from recorder.service.components import now_ms
from recorder.web.accounts import WebAccounts
from recorder.web.roles import Role
from recorder.web.serve import serve_web
from recorder.web.timeline import gap_label
from tests.officer.test_export_bundle import CALL_S, TRANSCRIPTS, one_second_segments, zcc_steps
from tests.service.test_service import record_calls, service, short_config, zcc_call

pytestmark = pytest.mark.slow

USER = "olivia"
ACTOR = f"web:{USER}"
PASSWORD = "correct horse battery staple 42"
REASON = "FINRA 4511 sample review"
MATTER = "Matter 2026-17"
#: What the review does, as the audit log names it (web.access: the reason gate).
ACTIONS = ("web.access", "play", "export", "verify", "hold.place", "hold.release")


@dataclass(frozen=True)
class Expected:
    recording_id: str
    track: str
    #: The gap on the track's WAV clock (seconds from its first sample) and its cause.
    gap_start_s: float
    gap_end_s: float
    cause: str
    track_duration_s: float


@pytest.mark.timeout(180)
async def test_an_officer_reviews_a_recording_in_the_browser(
    tmp_path: Path, chromium: Path, artifacts: Path
) -> None:
    config = one_second_segments(short_config(tmp_path))
    key = default_signing_key(config)
    key.parent.mkdir(parents=True, exist_ok=True)
    generate_signing_key(key)
    public = tmp_path / "signing.pub"
    public.write_bytes(public_bytes(load_signing_key(key)))
    with trio.fail_after(150):
        async with service(config) as running:
            [eng] = await record_calls(
                running, config, zcc_call(config, seconds=CALL_S, steps=zcc_steps())
            )
            c = running.components
            [row] = await c.catalog.search(stream_id=eng.scenario.rtms_stream_id)
            detail = await c.catalog.show(row.recording_id)
            assert detail is not None
            [gap, *_] = sorted(
                (g for g in detail.gaps if g.start_sample is not None), key=lambda g: g.start_ms
            )
            assert gap.start_sample is not None
            assert gap.end_sample is not None
            segs = [s for s in detail.segments if s.track == gap.track]
            rate = segs[0].sample_rate
            expected = Expected(
                row.recording_id,
                gap.track,
                gap.start_sample / rate,
                gap.end_sample / rate,
                gap.cause,
                sum(s.sample_count for s in segs) / rate,
            )
            await WebAccounts(c.catalog).add(
                USER,
                Role.SUPERVISOR,
                password=PASSWORD,
                actor="test",
                reason="browser test account",
                now_ms=now_ms(),
            )
            async with trio.open_nursery() as nursery:
                port = await nursery.start(partial(serve_web, c, config.web, now_ms=now_ms, port=0))
                base = f"http://127.0.0.1:{port}"
                await trio.to_thread.run_sync(
                    partial(review, chromium, base, expected, tmp_path, public, artifacts)
                )
                nursery.cancel_scope.cancel()
            # The catalog agrees with the audit page: every action under the signed-in user.
            trail = await c.catalog.audit_trail(row.recording_id)
            mine = {a.action for a in trail if a.actor == ACTOR}
            assert set(ACTIONS) <= mine, mine
            assert all(a.reason for a in trail if a.actor == ACTOR)


def review(
    chromium: Path, base: str, expected: Expected, tmp_path: Path, public: Path, shots: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    rid = expected.recording_id
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium),
            headless=True,
            args=["--no-sandbox", "--mute-audio", "--autoplay-policy=no-user-gesture-required"],
        )
        try:
            context = browser.new_context(
                accept_downloads=True, viewport={"width": 1280, "height": 900}
            )
            page = context.new_page()
            page.set_default_timeout(15_000)
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda msg: (
                    problems.append(f"console {msg.type}: {msg.text}")
                    if msg.type == "error"
                    else None
                ),
            )
            audio: list[tuple[int, str | None]] = []
            page.on(
                "response",
                lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            page.on(
                "response",
                lambda r: (
                    audio.append((r.status, r.headers.get("content-range")))
                    if "/audio" in r.url
                    else None
                ),
            )

            # Sign in: an unauthenticated page sends the browser to the login form.
            page.goto(f"{base}/search")
            expect(page.locator("form#login-form")).to_be_visible()
            page.screenshot(path=shots / "01-login.png")
            page.fill("form#login-form input[name=username]", USER)
            page.fill("form#login-form input[name=password]", PASSWORD)
            page.click("form#login-form [type=submit]")
            expect(page.locator("#whoami")).to_have_attribute("data-user", USER)

            # Search: recordings with gaps; ours is listed with its gaps.
            page.check("form#search-form input[name=has_gaps]")
            page.click("form#search-form [type=submit]")
            result = page.locator(f"tr.result[data-recording-id='{rid}']")
            expect(result).to_be_visible()
            expect(result.locator("td.gaps")).not_to_have_text("0")
            page.screenshot(path=shots / "02-search.png", full_page=True)

            # Open it; the player waits for a reason.
            result.locator("a.recording-link").click()
            expect(page.locator("section#recording")).to_have_attribute("data-recording-id", rid)
            page.fill("form#reason-form input[name=reason]", REASON)
            page.click("form#reason-form [type=submit]")
            expect(page.locator("#player")).to_have_attribute("data-loaded", "true")
            try:
                expect(page.locator("#play")).to_be_enabled()
            except AssertionError as exc:
                shown = page.locator("#player").inner_text()
                raise AssertionError(f"the player did not load: {problems} {shown}") from exc

            # The gap: a region on its track's lane, at its time, labelled with its cause.
            lane = page.locator(f".lane[data-track='{expected.track}']")
            label = gap_label(expected.cause)
            region = lane.locator("[part~='region']").filter(has_text=label)
            expect(region).to_have_count(1)
            listed = page.locator(
                f"li.gap[data-track='{expected.track}'][data-cause='{expected.cause}']"
            )
            expect(listed).to_contain_text(label)
            # Where it is drawn, as fractions of the lane's width (the track's duration).
            left, width = region.evaluate(
                """el => {
                    const lane = el.parentElement.getBoundingClientRect();
                    const box = el.getBoundingClientRect();
                    return [(box.left - lane.left) / lane.width, box.width / lane.width];
                }"""
            )
            duration = expected.track_duration_s
            assert abs(left * duration - expected.gap_start_s) < 0.02, (left, expected)
            assert abs(width * duration - (expected.gap_end_s - expected.gap_start_s)) < 0.02
            page.screenshot(path=shots / "03-recording.png", full_page=True)

            # Seek by the transcript, then play: the clock runs, the next cue lights up.
            cues = page.locator("ol#transcript li.cue")
            expect(cues).to_have_count(len(TRANSCRIPTS))
            first = cues.nth(0)
            first.click()
            expect(first).to_have_class("cue active")
            start = float(first.get_attribute("data-start-s") or "nan")
            assert abs(float(page.inner_text("#clock")) - start) < 0.11
            page.click("#play")
            second = cues.nth(1)
            expect(second).to_have_class("cue active", timeout=10_000)
            expect(first).not_to_have_class("cue active")
            page.click("#play")  # pause
            assert float(page.inner_text("#clock")) >= float(
                second.get_attribute("data-start-s") or "nan"
            )
            assert any(status == 206 and rng for status, rng in audio), audio
            # Only range reads by the media element: the waveform came from the peaks, the
            # browser never fetched a whole track to decode it.
            assert all(status == 206 for status, _ in audio), audio
            # Seek on the waveform: a click on the lane just after the last cue starts (past
            # the gap) moves the clock there and lights that cue.
            last = cues.nth(len(TRANSCRIPTS) - 1)
            target = float(last.get_attribute("data-start-s") or "nan") + 0.15
            offset = float(lane.get_attribute("data-offset-s") or "nan")
            box = lane.locator(".waveform").bounding_box()
            assert box is not None
            fraction = (target - offset) / expected.track_duration_s
            assert 0 < fraction < 1, fraction
            page.mouse.click(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)
            page.wait_for_function(
                f"Math.abs(parseFloat(document.getElementById('clock').textContent) - {target})"
                " < 0.11"
            )
            expect(last).to_have_class("cue active")

            # Verify now.
            page.click("form#verify-form [type=submit]")
            expect(page.locator("#verify-result")).to_have_class("ok")

            # A hold: placed from the recording, released on the holds page.
            page.fill("form#hold-place-form input[name=matter]", MATTER)
            page.fill("form#hold-place-form input[name=reason]", "litigation notice")
            page.click("form#hold-place-form [type=submit]")
            expect(page.locator("#holds li.hold[data-active='true']")).to_have_count(1)
            page.click("a#nav-holds")
            held = page.locator(f"table#holds tr.hold[data-matter='{MATTER}']")
            expect(held).to_have_count(1)
            page.screenshot(path=shots / "04-holds.png", full_page=True)
            held.locator("form.hold-release-form input[name=reason]").fill("matter closed")
            held.locator("form.hold-release-form [type=submit]").click()
            expect(held.locator("form.hold-release-form")).to_have_count(0)

            # The signed bundle, downloaded and checked by verify-export.
            page.goto(f"{base}/recordings/{rid}")
            with page.expect_download() as download:
                page.click("form#export-form [type=submit]")
            archive = tmp_path / "bundle.zip"
            download.value.save_as(archive)
            unpacked = tmp_path / "unpacked"
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(unpacked)
            [bundle] = [d for d in unpacked.iterdir() if d.is_dir()]
            checked = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "recorder",
                    "verify-export",
                    str(bundle),
                    "--public-key",
                    str(public),
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr

            # The audit page: each action under the signed-in user.
            page.click("a#nav-audit")
            page.goto(f"{base}/audit?actor={ACTOR}&recording={rid}")
            rows = page.locator(f"table#audit tr.audit-row[data-actor='{ACTOR}']")
            expect(rows.first).to_be_visible()
            actions = set(rows.evaluate_all("rs => rs.map(r => r.dataset.action)"))
            assert set(ACTIONS) <= actions, actions
            # Each with the reason the user gave for it.
            reasons = dict(
                rows.evaluate_all(
                    "rs => rs.map(r => [r.dataset.action, r.querySelector('td:last-child')"
                    ".textContent.trim()])"
                )
            )
            assert reasons["play"] == REASON
            assert reasons["hold.place"] == "litigation notice"
            assert reasons["hold.release"] == "matter closed"
            page.screenshot(path=shots / "05-audit.png", full_page=True)
            assert problems == [], problems
        finally:
            browser.close()
