"""``recorder demo --web``'s console with its one-time login, and OpenID Connect sign-in
against an identity provider served on loopback (discovery, JWKS, token endpoint, PKCE)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from recorder.config import Secret
from recorder.service.components import now_ms, open_components
from recorder.web.demo import serve_demo_console
from recorder.web.serve import serve_web
from tests.web.conftest import RecordedState, copy_state

pytestmark = pytest.mark.timeout(60)


async def test_demo_console_prints_a_working_one_time_login(
    recorded_state: RecordedState, tmp_path: Path
) -> None:
    copy_state(recorded_state, tmp_path / "state")
    lines: list[str] = []
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            url, user, password = await nursery.start(
                lambda task_status: serve_demo_console(
                    tmp_path / "state", print_fn=lines.append, port=0, task_status=task_status
                )
            )
            assert lines[0] == f"web console: {url}"
            assert user in lines[1]
            assert password in lines[1]
            assert url.startswith("http://127.0.0.1:")
            async with httpx.AsyncClient(base_url=url) as client:
                form = await client.get("/login")
                csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
                answer = await client.post(
                    "/login", data={"username": user, "password": password, "csrf": csrf}
                )
                assert answer.status_code == 303
                page = await client.get("/search", params={"has_gaps": "1"})
                assert recorded_state.recording_id in page.text
                assert 'id="nav-holds"' in page.text  # a supervisor: the whole console
            nursery.cancel_scope.cancel()


# --- OpenID Connect -------------------------------------------------------------------------

CLIENT_ID, CLIENT_SECRET = "console", "oidc-client-secret-value"


@dataclass
class Provider:
    """A minimal OpenID provider: the test plays the user at the authorization step."""

    issuer: str = ""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}))
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    token_requests: int = 0

    def approve(self, authorize_url: str, subject: str, **claims: object) -> tuple[str, str]:
        """The user signs in at the provider: returns (code, state) for the callback."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        assert query["client_id"] == CLIENT_ID
        assert query["response_type"] == "code"
        assert query["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(8)
        self.codes[code] = {
            "nonce": query["nonce"],
            "challenge": query["code_challenge"],
            "sub": subject,
            "redirect_uri": query["redirect_uri"],
            **{k: str(v) for k, v in claims.items()},
        }
        return code, query["state"]

    async def discovery(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
            }
        )

    async def jwks(self, request: Request) -> JSONResponse:
        return JSONResponse(KeySet([self.key]).as_dict(private=False))

    async def token(self, request: Request) -> JSONResponse:
        self.token_requests += 1
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {basic}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = await request.form()
        grant = self.codes.pop(str(form.get("code")), None)
        if grant is None:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        verifier = str(form.get("code_verifier"))
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant", "why": "pkce"}, status_code=400)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": grant.get("aud", CLIENT_ID),
            "sub": grant["sub"],
            "iat": now,
            "exp": now + 300,
            "nonce": grant.get("nonce_override", grant["nonce"]),
        }
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)
        return JSONResponse(
            {"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": id_token}
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/token", self.token, methods=["POST"]),
            ]
        )


async def _serve_provider(provider: Provider, *, task_status: trio.TaskStatus[int]) -> None:
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None

    async def run(*, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        await serve(provider.app(), config, task_status=task_status)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(run)
        task_status.started(int(binds[0].rsplit(":", 1)[1]))


async def test_oidc_sign_in(recorded_state: RecordedState, tmp_path: Path) -> None:
    config = copy_state(recorded_state, tmp_path / "state")
    provider = Provider()
    with trio.fail_after(45):
        async with trio.open_nursery() as nursery:
            idp_port = await nursery.start(_serve_provider, provider)
            provider.issuer = f"http://127.0.0.1:{idp_port}"
            web = replace(
                config.web,
                bind="127.0.0.1:0",
                oidc_issuer=provider.issuer,
                oidc_client_id=CLIENT_ID,
            )
            secrets_ = replace(config.secrets, web_oidc_client_secret=Secret(CLIENT_SECRET))
            config = replace(config, web=web, secrets=secrets_)
            async with open_components(config) as c:
                from recorder.web.accounts import WebAccounts
                from recorder.web.roles import Role

                await WebAccounts(c.catalog).add(
                    "carol", Role.AUDITOR, password=None, oidc_subject="idp|carol",
                    actor="os:test", reason="test", now_ms=now_ms(),
                )  # fmt: skip
                port = await nursery.start(
                    lambda task_status: serve_web(c, web, now_ms=now_ms, task_status=task_status)
                )
                base = f"http://127.0.0.1:{port}"

                async def start(client: httpx.AsyncClient) -> str:
                    answer = await client.get("/login/oidc", params={"next": "/audit"})
                    assert answer.status_code == 303
                    # The pending sign-in's cookie must come back with the provider's cross-site
                    # redirect: Lax (not Strict), and only to the callback.
                    cookie = answer.headers["set-cookie"].lower()
                    assert cookie.startswith("rtmsrec_oidc=")
                    assert "samesite=lax" in cookie
                    assert "path=/login/oidc/callback" in cookie
                    assert "httponly" in cookie
                    location = answer.headers["location"]
                    assert location.startswith(f"{provider.issuer}/authorize?")
                    return location

                async with httpx.AsyncClient(base_url=base) as client:
                    login_page = await client.get("/login")
                    assert 'id="oidc-login"' in login_page.text
                    code, state = provider.approve(await start(client), "idp|carol")
                    # A forged state is refused, and the code is never exchanged.
                    bad = await client.get(
                        "/login/oidc/callback", params={"code": code, "state": "x"}
                    )
                    assert bad.status_code == 403
                    assert provider.token_requests == 0
                    answer = await client.get(
                        "/login/oidc/callback", params={"code": code, "state": state}
                    )
                    # A page of ours moves on, so the Strict session cookie comes with the next
                    # (same-site) request; a redirect would still be the provider's navigation.
                    assert answer.status_code == 200, answer.text
                    assert '<meta http-equiv="refresh" content="0;url=/audit">' in answer.text
                    session_cookie = [
                        c
                        for c in answer.headers.get_list("set-cookie")
                        if c.startswith("rtmsrec_session=")
                    ]
                    assert "samesite=strict" in session_cookie[0].lower()
                    page = await client.get("/audit", follow_redirects=True)
                    assert page.status_code == 200
                    assert 'data-user="carol" data-role="auditor"' in page.text
                    assert CLIENT_SECRET not in page.text
                    # The same answer again: the pending sign-in is gone.
                    again = await client.get(
                        "/login/oidc/callback", params={"code": code, "state": state}
                    )
                    assert again.status_code == 403

                # Refused: unknown subject, wrong nonce, another audience.
                for subject, claims in (
                    ("idp|mallory", {}),
                    ("idp|carol", {"nonce_override": "n"}),
                    ("idp|carol", {"aud": "another-client"}),
                ):
                    async with httpx.AsyncClient(base_url=base) as client:
                        code, state = provider.approve(await start(client), subject, **claims)
                        answer = await client.get(
                            "/login/oidc/callback", params={"code": code, "state": state}
                        )
                        assert answer.status_code == 403, (subject, claims)
                        assert (await client.get("/search")).status_code == 303
                logins = await c.catalog.audit_events(action="web.login")
                assert [(e.actor, e.target) for e in logins] == [("web:carol", "carol")]
            nursery.cancel_scope.cancel()
