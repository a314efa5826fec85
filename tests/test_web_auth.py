"""Passwords, sign-in, sessions, bearer tokens (web/auth.py)."""

from __future__ import annotations

import base64
import json

import pytest
from signoff.web.auth import hash_password, verify_password
from web_support import (
    ORIGIN,
    PASSWORDS,
    TestClient,
    csrf_of,
    make_app,
    sign_in,
)

pytest_plugins = ["web_fixtures"]


def test_hash_is_self_describing_and_salted() -> None:
    first, second = hash_password("s3cret", n=2**10), hash_password("s3cret", n=2**10)
    assert first.startswith("scrypt$n=1024:r=8:p=1$")
    assert "," not in first  # it must sit in SIGNOFF_USERS="alice=<hash>,bob=<hash>"
    assert first != second  # a fresh salt every time
    assert verify_password("s3cret", first) and verify_password("s3cret", second)
    assert not verify_password("S3cret", first)
    assert not verify_password("", first)


def test_default_cost_is_recorded_in_the_hash() -> None:
    stored = hash_password("pw")
    assert stored.split("$")[1] == "n=32768:r=8:p=1"
    assert verify_password("pw", stored)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain",
        "scrypt$",
        "scrypt$n=1024,r=8,p=1$abc",
        "bcrypt$n=1024,r=8,p=1$AAAA$AAAA",
        "scrypt$n=1000,r=8,p=1$AAAA$AAAA",  # n not a power of two
        "scrypt$n=4194304,r=8,p=1$AAAA$AAAA",  # absurd cost: refused, not computed
        "scrypt$n=1024,r=8$AAAA$AAAA",
        "scrypt$n=x,r=8,p=1$AAAA$AAAA",
        "scrypt$n=1024,r=8,p=1$!!$??",
    ],
)
def test_malformed_hashes_never_verify(stored: str) -> None:
    assert verify_password("anything", stored) is False


def test_empty_password_cannot_be_hashed() -> None:
    with pytest.raises(ValueError):
        hash_password("")


def test_pages_need_sign_in(client: TestClient) -> None:
    for path in ("/", "/approvals", "/workflows", "/instances/x"):
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")


def test_htmx_request_without_session_is_told_to_go_to_login(client: TestClient) -> None:
    response = client.get("/", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")


def test_sign_in_and_out(client: TestClient) -> None:
    token = sign_in(client, "alice")
    page = client.get("/")
    assert page.status_code == 200
    assert page.context["chrome"].user == "alice"
    out = client.post("/logout", data={"csrf_token": token}, headers={"Origin": ORIGIN})
    assert out.status_code == 303
    assert client.get("/").status_code == 303


def test_wrong_password_and_unknown_user_get_the_same_answer(client: TestClient) -> None:
    for name, password in (("alice", "wrong"), ("mallory", "whatever")):
        token = csrf_of(client.get("/login").text)
        response = client.post(
            "/login",
            data={"username": name, "password": password, "csrf_token": token},
            headers={"Origin": ORIGIN},
        )
        assert response.status_code == 401
        assert "Wrong user name or password." in response.text
    assert client.get("/").status_code == 303


def test_login_form_needs_its_csrf_token(client: TestClient) -> None:
    client.get("/login")
    response = client.post(
        "/login",
        data={"username": "alice", "password": PASSWORDS["alice"]},
        headers={"Origin": ORIGIN},
    )
    assert response.status_code == 403
    assert client.get("/").status_code == 303


def test_next_is_only_followed_to_local_paths(client: TestClient) -> None:
    for target, expected in (
        ("/approvals", "/approvals"),
        ("//evil.example/x", "/"),
        ("https://evil.example", "/"),
        ("/\\evil.example", "/"),
    ):
        client.cookies.clear()
        token = csrf_of(client.get("/login").text)
        response = client.post(
            "/login",
            data={
                "username": "alice",
                "password": PASSWORDS["alice"],
                "csrf_token": token,
                "next": target,
            },
            headers={"Origin": ORIGIN},
        )
        assert response.headers["location"] == expected


def test_tampered_session_cookie_is_ignored(client: TestClient) -> None:
    sign_in(client, "bob")
    cookie = client.cookies["signoff_session"]
    payload, rest = cookie.split(".", 1)
    data = json.loads(base64.b64decode(payload))
    data["user"] = "alice"
    forged = base64.b64encode(json.dumps(data).encode()).decode() + "." + rest
    client.cookies.clear()
    client.cookies.set("signoff_session", forged)
    assert client.get("/").status_code == 303  # the signature no longer matches: signed out


def test_session_from_another_secret_is_ignored(engine: object) -> None:
    other = make_app(engine, secret_key="another-secret")  # type: ignore[arg-type]
    first = make_app(engine)  # type: ignore[arg-type]
    with TestClient(first, base_url=ORIGIN, follow_redirects=False) as a:
        sign_in(a, "alice")
        cookie = a.cookies["signoff_session"]
    with TestClient(other, base_url=ORIGIN, follow_redirects=False) as b:
        b.cookies.set("signoff_session", cookie)
        assert b.get("/").status_code == 303


def test_changing_a_password_ends_existing_sessions(engine: object) -> None:
    app = make_app(engine)  # type: ignore[arg-type]
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as c:
        sign_in(c, "alice")
        assert c.get("/").status_code == 200
        app.state.signoff.users = {
            **app.state.signoff.users,
            "alice": hash_password("new one", n=2**10),
        }
        assert c.get("/").status_code == 303


def test_removed_user_is_signed_out(engine: object) -> None:
    app = make_app(engine)  # type: ignore[arg-type]
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as c:
        sign_in(c, "bob")
        app.state.signoff.users = {k: v for k, v in app.state.signoff.users.items() if k != "bob"}
        assert c.get("/").status_code == 303


def test_open_access_lets_anyone_in_as_admin_and_under_any_name(engine: object) -> None:
    app = make_app(engine, users=None, open_access=True)  # type: ignore[arg-type]
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as c:
        page = c.get("/")
        assert page.status_code == 200 and page.context["chrome"].user == "admin"
        token = csrf_of(c.get("/login").text)
        c.post(
            "/login", data={"username": "alice", "csrf_token": token}, headers={"Origin": ORIGIN}
        )
        assert c.get("/").context["chrome"].user == "alice"


def test_no_users_configured_means_nobody_gets_in(engine: object) -> None:
    app = make_app(engine, users=None)  # type: ignore[arg-type]
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as c:
        token = csrf_of(c.get("/login").text)
        response = c.post(
            "/login",
            data={"username": "alice", "password": "x", "csrf_token": token},
            headers={"Origin": ORIGIN},
        )
        assert response.status_code == 401


def test_session_cookie_is_http_only_and_same_site(client: TestClient) -> None:
    client.get("/login")
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login",
        data={"username": "alice", "password": PASSWORDS["alice"], "csrf_token": token},
        headers={"Origin": ORIGIN},
    )
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
