"""Signing in with the organisation's OpenID Connect provider, through Authlib.

`GET /login/oidc` starts the authorization code flow (PKCE with S256, state and nonce: Authlib
makes them and keeps them in the session, which is the signed session cookie every page has);
`GET /login/oidc/callback` ends it: Authlib checks the state, exchanges the code and checks the
ID token's signature, issuer, audience, expiry and nonce against this app's clock. The user
claim becomes the user's name, the groups claim their groups (`Engine.remember_groups`), and
the session is recorded in the database like a password sign-in. Sign-out offers the
provider's end-session endpoint on the sign-in page it lands on (a form may not redirect to
another site under the dashboard's Content-Security-Policy, `form-action 'self'`).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import secrets
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import authlib.deprecate
import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.oidc.core import CodeIDToken
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from signoff.engine import name_problem
from signoff.web.auth import SESSION_LIFETIME, chrome, local_path
from signoff.web.render import template
from signoff.web.state import dashboard, root_of
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

with warnings.catch_warnings():
    # Authlib's HTTP client prefers the httpx2 package and warns when it finds httpx (which
    # Starlette's TestClient uses too); both work the same here.
    warnings.filterwarnings(
        "ignore", "The httpx module is deprecated", authlib.deprecate.AuthlibDeprecationWarning
    )
    from authlib.integrations.starlette_client import OAuth
    from authlib.integrations.starlette_client import OAuthError as _OAuthError

log = logging.getLogger("signoff.web")


def _http_errors() -> tuple[type[Exception], ...]:
    """What Authlib's HTTP client raises when the provider cannot be reached: httpx's errors,
    or those of httpx2 when that is installed (Authlib then uses it)."""
    found: list[type[Exception]] = [httpx.HTTPError]
    with contextlib.suppress(ImportError, AttributeError):
        found.append(importlib.import_module("httpx2").HTTPError)
    return tuple(found)


HTTP_ERRORS = _http_errors()
UNREACHABLE: tuple[type[Exception], ...] = (*HTTP_ERRORS, ValueError)  # ValueError: not JSON

DEFAULT_SCOPES = ("openid", "email", "profile")
# seconds a token's times may be off (the provider's clock and ours): Authlib's default
LEEWAY = 120
# what the session cookie may spend on a user's groups: a browser drops a cookie over 4 KB,
# and the cookie also carries the ID token (for the provider's sign-out)
MAX_GROUPS_TEXT = 1500
PROVIDER_TIMEOUT = 10.0
CLIENT_NAME = "signoff"
NEXT_KEY = "oidc_next"
LOOPBACK = ("localhost", "127.0.0.1", "::1")
KNOWN_PROVIDERS = {
    "accounts.google.com": "Google",
    "login.microsoftonline.com": "Microsoft",
    "okta.com": "Okta",
    "oktapreview.com": "Okta",
}


@dataclass(frozen=True)
class OIDC:
    """Where and as whom the dashboard signs people in with OpenID Connect.

    `issuer` is the provider's issuer URL (its discovery document is
    `<issuer>/.well-known/openid-configuration`); `client_id` and `client_secret` are this
    dashboard's registration there, with the redirect URI `<base>/login/oidc/callback`.
    `user_claim` names the claim that becomes the user's name (`email` by default;
    `preferred_username` or `sub` elsewhere); `groups_claim` the claim holding the list of
    groups that make them a member of `group:NAME` (None: no groups from the provider).
    `name` is what the sign-in button says ("Sign in with <name>"; default from the issuer).
    """

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    user_claim: str = "email"
    groups_claim: str | None = "groups"
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    name: str = ""

    def __post_init__(self) -> None:
        scopes: Any = self.scopes
        if isinstance(scopes, str):
            object.__setattr__(self, "scopes", tuple(scopes.split()))
        else:
            object.__setattr__(self, "scopes", tuple(scopes))
        object.__setattr__(self, "issuer", self.issuer.strip().rstrip("/"))
        if self.groups_claim is not None and not self.groups_claim.strip():
            object.__setattr__(self, "groups_claim", None)
        parts = urlsplit(self.issuer)
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK):
            raise ValueError(
                f"the OIDC issuer must be an https:// URL (http:// only on this machine), "
                f"not {self.issuer!r}"
            )
        if not self.client_id.strip():
            raise ValueError("the OIDC client id is empty")
        if "openid" not in self.scopes:
            raise ValueError('the OIDC scopes must include "openid"')
        if not self.user_claim.strip():
            raise ValueError("the OIDC user claim is empty")

    @property
    def provider_name(self) -> str:
        if self.name:
            return self.name
        host = urlsplit(self.issuer).hostname or self.issuer
        for known, shown in KNOWN_PROVIDERS.items():
            if host == known or host.endswith("." + known):
                return shown
        return host

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> OIDC | None:
        """From SIGNOFF_OIDC_ISSUER, _CLIENT_ID, _CLIENT_SECRET, _USER_CLAIM, _GROUPS_CLAIM,
        _SCOPES and _NAME; None when SIGNOFF_OIDC_ISSUER is not set. ValueError when the
        client id or secret is missing."""
        env = os.environ if environ is None else environ
        issuer = env.get("SIGNOFF_OIDC_ISSUER", "").strip()
        if not issuer:
            return None
        client_id = env.get("SIGNOFF_OIDC_CLIENT_ID", "").strip()
        secret = env.get("SIGNOFF_OIDC_CLIENT_SECRET", "")
        if not client_id or not secret:
            raise ValueError(
                "SIGNOFF_OIDC_ISSUER is set: SIGNOFF_OIDC_CLIENT_ID and SIGNOFF_OIDC_CLIENT_SECRET "
                "are needed too (the dashboard's registration at the provider)"
            )
        groups = env.get("SIGNOFF_OIDC_GROUPS_CLAIM")
        return cls(
            issuer,
            client_id,
            secret,
            user_claim=env.get("SIGNOFF_OIDC_USER_CLAIM", "").strip() or "email",
            groups_claim="groups" if groups is None else (groups.strip() or None),
            scopes=tuple((env.get("SIGNOFF_OIDC_SCOPES") or " ".join(DEFAULT_SCOPES)).split()),
            name=env.get("SIGNOFF_OIDC_NAME", "").strip(),
        )


class SignInRefused(Exception):
    """The provider's answer signs no one in; the message says why, for the person."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class OIDCClient:
    """One app's Authlib client for its provider (each app its own: nothing global)."""

    def __init__(self, config: OIDC, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.clock = clock
        oauth = OAuth()
        self.app: Any = oauth.register(
            CLIENT_NAME,
            client_id=config.client_id,
            client_secret=config.client_secret,
            server_metadata_url=f"{config.issuer}/.well-known/openid-configuration",
            client_kwargs={
                "scope": " ".join(config.scopes),
                "code_challenge_method": "S256",
                "timeout": PROVIDER_TIMEOUT,
            },
        )

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (fetched once), whose issuer must be ours."""
        try:
            found: dict[str, Any] = await self.app.load_server_metadata()
        except UNREACHABLE as exc:
            log.warning("OIDC discovery at %s failed: %s", self.config.issuer, exc)
            raise SignInRefused(
                f"The identity provider at {self.config.issuer} did not answer. Try again in "
                "a moment.",
                502,
            ) from None
        if str(found.get("issuer", "")).rstrip("/") != self.config.issuer:
            log.error(
                "OIDC discovery at %s names another issuer: %r",
                self.config.issuer,
                found.get("issuer"),
            )
            raise SignInRefused(
                "The identity provider's discovery document names another issuer than the one "
                "configured (SIGNOFF_OIDC_ISSUER): nobody can sign in this way until that is "
                "fixed.",
                502,
            )
        return found

    def claims_class(self) -> type[Any]:
        """Authlib's ID token checks with this app's clock as "now"."""
        clock = self.clock

        class ClockedIDToken(CodeIDToken):  # type: ignore[misc]
            def validate(self, now: int | None = None, leeway: int = 0) -> None:
                super().validate(int(clock().timestamp()), leeway)

        return ClockedIDToken

    async def finish(self, request: Request) -> tuple[str, list[str], str]:
        """The user name, groups and ID token of a callback; SignInRefused when it signs no
        one in."""
        metadata = await self.metadata()
        options = {
            "iss": {"essential": True, "values": [metadata["issuer"]]},
            # Authlib checks the audience only through `azp` unless told: a token meant for
            # another client of the same provider must not sign anyone in here
            "aud": {"essential": True, "values": [self.config.client_id]},
        }
        try:
            token = await self.app.authorize_access_token(
                request, claims_options=options, claims_cls=self.claims_class(), leeway=LEEWAY
            )
        except _OAuthError as exc:
            raise SignInRefused(_oauth_refusal(exc)) from None
        except ClaimError as exc:
            raise SignInRefused(self._claim_refusal(exc)) from None
        except (JoseError, AuthlibBaseError) as exc:
            raise SignInRefused(
                f"The identity provider's ID token failed a check ({exc}). Nobody was signed in."
            ) from None
        except HTTP_ERRORS as exc:
            log.warning("OIDC token request to %s failed: %s", self.config.issuer, exc)
            raise SignInRefused(
                "The identity provider did not answer. Try again in a moment.", 502
            ) from None
        claims = token.get("userinfo")
        id_token = token.get("id_token")
        if not claims or not isinstance(id_token, str):
            raise SignInRefused(
                "The identity provider sent no ID token (is the scope 'openid' allowed for this "
                "client?). Nobody was signed in."
            )
        claims = dict(claims)
        wanted = [c for c in (self.config.user_claim, self.config.groups_claim) if c]
        if any(c not in claims for c in wanted) and metadata.get("userinfo_endpoint"):
            claims = await self._with_userinfo(token, claims)
        return self._user(claims), self._groups(claims), id_token

    async def _with_userinfo(self, token: dict[str, Any], claims: dict[str, Any]) -> dict[str, Any]:
        """Claims the ID token lacks, from the userinfo endpoint (for the same subject)."""
        try:
            info = dict(await self.app.userinfo(token=token))
        except (*UNREACHABLE, AuthlibBaseError) as exc:
            log.warning("OIDC userinfo at %s failed: %s", self.config.issuer, exc)
            return claims
        if info.get("sub") != claims.get("sub"):
            raise SignInRefused(
                "The identity provider's user information is about someone else than its ID "
                "token. Nobody was signed in."
            )
        return {**info, **claims}

    def _user(self, claims: Mapping[str, Any]) -> str:
        claim = self.config.user_claim
        value = claims.get(claim)
        if value is None or value == "":
            raise SignInRefused(
                f"The identity provider did not say who you are: its answer has no {claim!r} "
                "claim (SIGNOFF_OIDC_USER_CLAIM; the scopes may need 'email' or 'profile'). "
                "Nobody was signed in."
            )
        problem = name_problem(value, f"The {claim!r} claim")
        if problem:
            raise SignInRefused(
                f"{problem}, so it cannot be a user's name here. Nobody was signed in."
            )
        assert isinstance(value, str)
        if claim == "email" and claims.get("email_verified") is False:
            raise SignInRefused(
                f"The identity provider says the address {value} is not verified. Verify it "
                "there, then sign in again."
            )
        return value

    def _groups(self, claims: Mapping[str, Any]) -> list[str]:
        claim = self.config.groups_claim
        if claim is None or claims.get(claim) is None:
            return []
        value = claims[claim]
        if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
            raise SignInRefused(
                f"The identity provider's {claim!r} claim is not a list of group names. Nobody "
                "was signed in."
            )
        groups = sorted(set(value))
        for group in groups:
            problem = name_problem(group, f"The group {group[:60]!r}")
            if problem:
                raise SignInRefused(f"{problem}. Nobody was signed in.")
        if sum(len(g) + 1 for g in groups) > MAX_GROUPS_TEXT:
            raise SignInRefused(
                f"The identity provider sent {len(groups)} groups, more than a session can carry. "
                "Have it send only the groups this application needs (see docs/identity.md). "
                "Nobody was signed in."
            )
        return groups

    def _claim_refusal(self, exc: ClaimError) -> str:
        if isinstance(exc, ExpiredTokenError):
            why = "it has expired (check that this server's clock is right)"
        elif exc.claim == "iss":
            why = f"it was issued by someone else than {self.config.issuer}"
        elif exc.claim in ("aud", "azp"):
            why = f"it was made for another application, not for client {self.config.client_id}"
        elif exc.claim == "nonce":
            why = "it does not answer the sign-in started in this browser (nonce)"
        elif exc.claim in ("iat", "nbf"):
            why = "it is not valid yet (check that this server's clock is right)"
        else:
            why = f"its {exc.claim!r} claim is missing or wrong"
        return f"The identity provider's ID token was refused: {why}. Nobody was signed in."

    async def end_session_url(self, id_token: str | None, after: str) -> str | None:
        """The provider's end-session URL for this sign-out, when it has one."""
        try:
            metadata = await self.metadata()
        except SignInRefused:
            return None
        if not metadata.get("end_session_endpoint"):
            return None
        made = await self.app.create_logout_url(
            post_logout_redirect_uri=after,
            id_token_hint=id_token or None,
            client_id=self.config.client_id,
        )
        url: str = made["url"]
        return url


def _oauth_refusal(exc: _OAuthError) -> str:
    if exc.error == "mismatching_state":
        return (
            "This sign-in answer does not belong to a sign-in started in this browser: it was "
            "used already, it expired, or it came from somewhere else. Nobody was signed in."
        )
    said = exc.error + (f": {exc.description}" if exc.description else "")
    return f"The identity provider refused the sign-in ({said[:300]}). Nobody was signed in."


def client_of(request: Request) -> OIDCClient:
    found = dashboard(request).oidc
    if found is None:
        raise HTTPException(404)
    return found


def callback_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}{root_of(request)}/login/oidc/callback"


# --- routes ------------------------------------------------------------------------------------


async def start(request: Request) -> Response:
    """`GET /login/oidc?next=...`: off to the provider."""
    client = client_of(request)
    next_path = local_path(request.query_params.get("next"), root_of(request))
    try:
        await client.metadata()
        response: Response = await client.app.authorize_redirect(request, callback_url(request))
    except SignInRefused as exc:
        return refused(request, exc)
    request.session[NEXT_KEY] = next_path
    return response


async def callback(request: Request) -> Response:
    """`GET /login/oidc/callback`: the provider's answer; signs the user in or says why not."""
    client = client_of(request)
    board = dashboard(request)
    try:
        name, groups, id_token = await client.finish(request)
    except SignInRefused as exc:
        log.warning("OIDC sign-in refused: %s", exc)
        return refused(request, exc)
    next_path = local_path(request.session.get(NEXT_KEY), root_of(request))
    token = await run_in_threadpool(board.engine.open_session, name, SESSION_LIFETIME)
    board.engine.remember_groups(name, groups)
    request.session.clear()
    request.session.update(
        {
            "user": name,
            "sid": token,
            "pw": "",
            "via": "oidc",
            "groups": groups,
            "idt": id_token,
            "csrf": secrets.token_urlsafe(32),
        }
    )
    return RedirectResponse(next_path, status_code=303)


def refused(request: Request, exc: SignInRefused) -> Response:
    page = SignInFailed(str(exc))
    return template(
        request, "pages/signin_failed.html", page, chrome(request, "login"), status_code=exc.status
    )


@dataclass(frozen=True)
class SignInFailed:
    """Template context of the page a refused sign-in shows."""

    message: str
