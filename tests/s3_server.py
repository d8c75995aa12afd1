"""moto's S3 server, in-process over real HTTP on 127.0.0.1, for tests that talk to S3.

Use the fixture by importing it into a test module or conftest:

    from tests.s3_server import s3_endpoint  # noqa: F401  (pytest fixture)

and make buckets with `s3_client(endpoint).create_bucket(Bucket=...)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from orion_operator.devenv.postgres import free_port

REGION = "us-east-1"
ACCESS_KEY_ID = "test"
SECRET_ACCESS_KEY = "test-secret"  # moto accepts any credentials


@contextmanager
def running_s3_server() -> Iterator[str]:
    """Start moto's server on a free port; yields its endpoint URL and stops it afterwards."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    """A plain boto3 client for the test server, to set up and inspect buckets directly."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The endpoint URL (http://127.0.0.1:<port>) of one moto S3 server for the whole session."""
    with running_s3_server() as endpoint:
        yield endpoint
