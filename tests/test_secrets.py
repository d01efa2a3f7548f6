"""Secrets never reach what a run writes."""

from __future__ import annotations

import logging

import pytest

from kon_ray.secrets import MASK, RedactingFilter, is_secret_key, redact, secret_values


@pytest.mark.parametrize("key", ["password", "db_password", "tracking.token", "api_key", "AWS_SECRET_ACCESS_KEY",
                                 "aws.secret_key", "auth", "private-key", "credentials"])
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["id_column", "keys", "tokenizer_name", "authority", "monkey", "psi_bins"])
def test_ordinary_keys(key):
    assert not is_secret_key(key)


def test_redact_masks_values_and_url_passwords():
    plain = {"tracking": {"uri": "https://alice:s3cr3t-pw@mlflow.example:5000", "token": "tok-123"},
             "model": {"max_depth": 6}, "list": ["http://bob:hunter22@h/x"]}
    assert redact(plain) == {"tracking": {"uri": f"https://alice:{MASK}@mlflow.example:5000", "token": MASK},
                             "model": {"max_depth": 6}, "list": [f"http://bob:{MASK}@h/x"]}
    assert secret_values(plain) == {"s3cr3t-pw", "tok-123", "hunter22"}


def test_the_log_filter_masks_planted_values():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "connecting with %s to %s", ("tok-123456",
                               "https://u:pw-999@h"), None)
    RedactingFilter({"tok-123456"}).filter(record)
    assert record.getMessage() == f"connecting with {MASK} to https://u:{MASK}@h"


def test_overrides_as_hydra_records_them_give_up_their_secret_values():
    recorded = {"task": ["+dataset=POLA", "+hydra.job.env_set.KON_API_TOKEN=tok-777", "tracking.password=pw-1",
                         "~auth=gone", "model.max_depth=6"], "env_set": {"KON_API_TOKEN": "tok-777"}}
    assert secret_values(recorded) == {"tok-777", "pw-1", "gone"}
