"""Secrets are masked wherever values are recorded: command line, hyperparameters,
references (issue 11, item 13)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

import em_core as em
from em_core._secrets import is_secret_name, mask_url, redact_argv

MUST_MASK = [
    "--password", "--passwd", "--pwd", "--pass", "db_pass", "--dbPassword", "--wandbApiKey",
    "--api-key", "--api_key", "--apikey", "--authToken", "--auth", "--auth-token",
    "--hf-token", "HF_TOKEN", "GITHUB_TOKEN", "db.password", "+db.password", "--secret",
    "--client-secret", "AWS_SECRET_ACCESS_KEY", "--aws-secret-access-key", "--access-key",
    "--private-key", "--wandb-key", "cookie", "--session-key", "X-Amz-Security-Token",
    "credentials", "--bearer", "Authorization", "--encryption-key", "--slackWebhookSecret",
]
MUST_KEEP = [
    "--max-tokens", "--tokenizer", "num_tokens", "token_dropout", "--pass-rate", "--key-dim",
    "--keyframes", "monitor_key", "--lr", "--batch-size", "--passes", "--author",
    "--authors", "--tokenizer-path", "--sort-key", "--secretary-dim", "--key",
    "max_new_tokens",
]


@pytest.mark.parametrize("name", MUST_MASK)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", MUST_KEEP)
def test_ml_names_that_are_not_secrets(name: str) -> None:
    assert not is_secret_name(name)


def test_own_names_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not is_secret_name("--license-server")
    monkeypatch.setenv("EM_SECRET_NAMES", "license_server, pin")
    assert is_secret_name("--license-server") and is_secret_name("PIN")
    assert redact_argv(["--pin", "1234"]) == ["--pin", "***"]


def test_redact_argv_spellings() -> None:
    argv = ["train.py", "--wandbApiKey=k1", "--authToken", "k2", "--pwd", "k3", "--pass", "k4",
            "--dbPassword", "k5", "--auth", "user:k6", "--header", "Authorization: Bearer k7",
            "--header", "Content-Type: json", "db.password=k8", "NAME_TOKEN=k9",
            "--token", "--lr", "0.1", "--url=https://u:k10@host/x?token=k11&page=2",
            "--max-tokens", "512", "--offset", "-5"]
    out = redact_argv(argv)
    dumped = json.dumps(out)
    for i in range(1, 12):
        assert f"k{i}" not in dumped.replace("k1=", "")  # 'k1' vs. 'k10': check values
    assert out[out.index("--token") + 1] == "--lr"  # a flag is not swallowed as a value
    assert "--header" in out and "Content-Type: json" in out
    assert "Authorization: ***" in out
    assert out[-4:] == ["--max-tokens", "512", "--offset", "-5"]
    assert "https://***@host/x?token=***&page=2" in out[-5]


def test_hyperparameters_are_masked_by_name(run: em.Run) -> None:
    args = argparse.Namespace(lr=0.1, api_key="hp1", max_tokens=512,
                              db={"password": "hp2", "host": "h"})
    run.hparams.update(args)
    run.hparams["wandbApiKey"] = "hp3"
    run.hparams.update({"auth": {"user": "u", "token": "hp4"}})
    run.finish()
    text = (Path(run.local) / "run.json").read_text()
    for secret in ("hp1", "hp2", "hp3", "hp4"):
        assert secret not in text
    hp = em.load_run(run.local).hparams
    assert hp["api_key"] == "***" and hp["db"]["password"] == "***" and hp["auth"] == "***"
    assert hp["lr"] == 0.1 and hp["max_tokens"] == 512 and hp["db"]["host"] == "h"


def test_create_run_hparams_are_masked() -> None:
    run = em.create_run(name="masked", hparams={"HF_TOKEN": "hp5", "lr": 1})
    run.finish()
    assert "hp5" not in (Path(run.local) / "run.json").read_text()


def test_references_keep_no_credentials() -> None:
    art = em.create_artifact("refs")
    art.add_reference("https://user:ref1@example.com/data.tar?X-Amz-Signature=ref2&v=1")
    art.add_reference("s3://bucket/key?token=ref3", obj_path="s3obj")
    text = (Path(art.local) / "artifact.json").read_text()
    for secret in ("ref1", "ref2", "ref3"):
        assert secret not in text
    assert art.objects["s3obj"]["uri"] == "s3://bucket/key?token=***"
    assert mask_url("https://host/x?v=1") == "https://host/x?v=1"


# ---- review of the first version: leaks, lost data and ML names it masked


@pytest.mark.parametrize("argv, leaked", [
    (["https://user:lk1@host/x?token=lk2"], ["lk1", "lk2"]),  # a URL is not `NAME=value`
    (["--header=Authorization: Bearer lk3"], ["lk3"]),
    (["-HAuthorization: Bearer lk4"], ["lk4"]),  # curl's attached form
    (["--header", "Private-Token: lk5"], ["lk5"]),  # a header named like a secret
    (["https://user:p@lk6@host/x"], ["lk6"]),  # an unencoded '@' in the password
    (["--opts", "lr=0.1,api_key=lk7"], ["lk7"]),
    (["--config", '{"password": "lk8", "lr": 0.1}'], ["lk8"]),
    (["--api-key2", "lk9"], ["lk9"]),
])
def test_redact_argv_leaks_nothing(argv: list[str], leaked: list[str]) -> None:
    dumped = json.dumps(redact_argv(argv))
    for secret in leaked:
        assert secret not in dumped


def test_redact_argv_keeps_the_rest_of_a_url() -> None:
    url = "https://h/data?sig=s1&v=1&X-Amz-Credential=AK%2Fx&X-Amz-Signature=s2&page=2"
    assert redact_argv([url]) == [
        "https://h/data?sig=***&v=1&X-Amz-Credential=***&X-Amz-Signature=***&page=2"]
    assert redact_argv(["https://h/x#access_token=s3&state=4"]) == [
        "https://h/x#access_token=***&state=4"]


@pytest.mark.parametrize("name", [
    "pad_token", "eos_token", "bos_token", "unk_token", "mask_token", "sep_token",
    "cls_token", "tokenizer.pad_token", "max_token", "image_token", "forward_pass",
    "first_pass", "signature", "model.signature", "--sig", "--no-password",
])
def test_more_ml_names_that_are_not_secrets(name: str) -> None:
    assert not is_secret_name(name)


def test_tokenizer_settings_are_recorded(run: em.Run) -> None:
    run.hparams.update({"tokenizer": {"pad_token": "<pad>", "eos_token": "</s>"},
                        "use_auth": True, "hf_token": None})
    assert redact_argv(["model.tokenizer.pad_token=<pad>"]) == [
        "model.tokenizer.pad_token=<pad>"]
    hp = em.load_run(run.local).hparams
    assert hp["tokenizer"]["pad_token"] == "<pad>" and hp["tokenizer"]["eos_token"] == "</s>"
    assert hp["use_auth"] is True and hp["hf_token"] is None  # nothing secret to hide


def test_query_only_names() -> None:
    # `key`, `sig` and `signature` are secrets as URL parameters, ordinary names elsewhere
    assert mask_url("https://maps.example/api?key=k1&q=x") == "https://maps.example/api?key=***&q=x"
    assert redact_argv(["--key", "k"]) == ["--key", "k"]


def test_an_artifact_whose_files_folder_is_a_link_is_never_written_through(
        tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    src = tmp_path / "model.bin"
    src.write_bytes(b"weights")
    art = em.create_artifact("planted")
    files = Path(art.local) / "files"
    files.rmdir()
    files.symlink_to(outside)  # the whole files/ folder replaced by a link
    with pytest.raises(ValueError, match="link"):
        art.add_file(src, obj_path="model.bin")
    assert list(outside.iterdir()) == []
    assert "model.bin" not in art.objects
