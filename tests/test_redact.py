"""One redaction pass: known secret values and secret-shaped strings."""

from aura_ops.redact import MASK, Redactor


def test_known_values_are_masked_everywhere() -> None:
    """A secret value is masked in text and nested data."""
    r = Redactor(["canary-9a8b7c6d"])
    assert r.text("got canary-9a8b7c6d back") == f"got {MASK} back"
    assert r.obj({"a": ["x canary-9a8b7c6d"], "n": 3}) == {"a": [f"x {MASK}"], "n": 3}


def test_shapes_are_masked() -> None:
    """Passwords in URLs, bearer headers, key=value secrets and token formats are masked."""
    r = Redactor()
    cases = {
        "postgresql://app:hunter22@db:5432/aura": f"postgresql://app:{MASK}@db:5432/aura",
        "Authorization: Bearer abc.def.ghi123": f"Authorization: Bearer {MASK}",
        "host=db password=s3cr3t user=x": f"host=db password={MASK} user=x",
        '{"api_key": "k-123456"}': f'{{"api_key": "{MASK}"}}',
        "key sk-proj-AAAAAAAAAAAAAAAAAAAA end": f"key {MASK} end",
    }
    for raw, want in cases.items():
        assert r.text(raw) == want


def test_environment_secrets_and_dsn_passwords() -> None:
    """Values of secret-looking env vars are secrets, and so is the password inside a DSN."""
    env = {"APP_DB_DSN": "postgresql://u:pw-canary-123@h/db", "HOME": "/root"}
    r = Redactor.from_environment([], environ=env)
    assert r.text("pw-canary-123") == MASK
    assert r.text("/root") == "/root"


def test_short_values_are_not_treated_as_secrets() -> None:
    """Values too short to be secrets (e.g. 'true') are not masked everywhere."""
    assert Redactor(["true"]).text("true story") == "true story"


def test_assignments_to_secret_looking_names_are_masked() -> None:
    """``db_password = "..."`` in a parameters cell is masked; ``*_env`` names stay visible."""
    r = Redactor()
    assert r.text('db_password = "hunter2secret"  # x') == f'db_password = "{MASK}"  # x'
    assert r.text("csrf_token: zzzzyyyy") == f"csrf_token: {MASK}"
    assert r.text('password_env = "AURA_PW"') == 'password_env = "AURA_PW"'
    assert r.text("max_tokens=5") == "max_tokens=5"


def test_values_under_secret_looking_keys_are_masked() -> None:
    """obj() masks string values under secret-looking keys, not *_env names nor counts."""
    data = {
        "db_password": "x1",
        "client_secret": "abc",
        "dsn": "host=db",
        "dsn_env": "AURA_DSN",
        "prompt_tokens": "12",
        "author": "me",
        "nested": [{"token": "t"}],
    }
    assert Redactor().obj(data) == {
        "db_password": MASK,
        "client_secret": MASK,
        "dsn": MASK,
        "dsn_env": "AURA_DSN",
        "prompt_tokens": "12",
        "author": "me",
        "nested": [{"token": MASK}],
    }
