"""The input policy: which schemes an input string may use by default and when enabled, and
which addresses a service's policy refuses (every kind, also inside IPv6 addresses)."""

from __future__ import annotations

import pickle
import threading

import pytest

from autodistill_metaclip import ModelSpec
from autodistill_metaclip.inputs.policy import (
    DEFAULT_POLICY,
    InputPolicy,
    in_force,
    schemes_of,
    using,
)

ALLOWED_BY_DEFAULT = [
    "photos/a.jpg",
    "/abs/a.jpg",
    "C:\\photos\\a.jpg",
    "file:///tmp/a.jpg",
    "file://localhost/tmp/a.jpg",
    "http://example.com/a.jpg",
    "HTTPS://example.com/a.jpg",
    "https://[::1]:8080/a.jpg",  # "::" of an IPv6 address is no fsspec chain
    "http://127.0.0.1:9/a.jpg",  # any address: public_only is off
    "s3://bucket/a.jpg",
    "s3a://bucket/a.jpg",
    "gs://bucket/a.jpg",
    "gcs://bucket/a.jpg",
    "az://container/a.jpg",
    "abfs://container/a.jpg",
    "abfss://container/a.jpg",
]
REFUSED_BY_DEFAULT = {
    "memory://photos/a.jpg": "memory",
    "ftp://127.0.0.1/a.jpg": "ftp",
    "sftp://host/a.jpg": "sftp",
    "webhdfs://127.0.0.1/a.jpg": "webhdfs",
    "zip://a.png::http://127.0.0.1/x.zip": "zip",
    "zip://a.png::file:///tmp/x.zip": "zip",
    "s3://bucket/a.png::memory://x": "memory",  # every protocol of a chain must be allowed
    "hdfs://namenode/a.jpg": "hdfs",
    "github://org:repo@/a.jpg": "github",
}


@pytest.mark.parametrize("location", ALLOWED_BY_DEFAULT)
def test_allowed_by_default(location: str) -> None:
    assert InputPolicy().refusal(location) is None


@pytest.mark.parametrize(("location", "scheme"), REFUSED_BY_DEFAULT.items())
def test_other_schemes_only_when_enabled(location: str, scheme: str) -> None:
    why = InputPolicy().refusal(location)
    assert why is not None and why.startswith(f"{scheme}:// inputs are not allowed")
    assert f"InputPolicy().allowing({scheme!r}) or --allow-scheme {scheme}" in why
    enabled = InputPolicy().allowing(*schemes_of(location))
    assert enabled.refusal(location) is None


def test_schemes_of() -> None:
    assert schemes_of("a.jpg") == ["file"]
    assert schemes_of("Zip://a.png::HTTP://h/x.zip") == ["zip", "http"]
    assert schemes_of("https://h/a::b.jpg") == ["https"]
    assert schemes_of("file:///a::b.jpg") == ["file"]  # read as the local file it names
    assert schemes_of("simplecache::s3://b/a.jpg") == ["file"]  # no scheme first: a local path


def test_public_urls_refuses_everything_but_http() -> None:
    service = InputPolicy.public_urls()
    assert service.refusal("https://example.com/a.jpg") is None
    for location in ("a.jpg", "file:///etc/passwd", "s3://b/a.jpg", "memory://a"):
        assert service.refusal(location) is not None, location
    why = service.refusal("photo.jpg")
    assert why is not None and why.startswith("local files are not allowed")


def test_public_only_refuses_protocols_it_cannot_check() -> None:
    """ftp or a chain name a host that fsspec connects to: no address check is possible."""
    policy = InputPolicy(public_only=True).allowing("ftp", "zip", "memory")
    assert policy.refusal("s3://bucket/a.jpg") is None  # the operator's endpoint
    assert policy.refusal("memory://a.jpg") is None  # no host at all
    for location in ("ftp://example.com/a.jpg", "zip://a.png::s3://b/x.zip"):
        why = policy.refusal(location)
        assert why is not None and "cannot be checked for public addresses" in why


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.7", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("100.64.0.1", "non-global"),  # shared address space (carrier NAT)
        ("169.254.1.1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private"),  # reserved, which Python counts as private
        ("192.0.2.1", "private"),  # documentation
        ("169.254.169.254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),  # Azure's: otherwise a public address
        ("::ffff:127.0.0.1", "private"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::", "cloud metadata"),  # 6to4 of 169.254.169.254
        ("64:ff9b::a00:1", "reserved"),  # NAT64 of 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo
    ],
)
def test_public_only_refuses_every_non_public_address(address: str, kind: str) -> None:
    why = InputPolicy(public_only=True).address_refusal(address)
    expected = "is a cloud metadata address" if kind == "cloud metadata" else f"({kind})"
    assert why is not None and why.startswith(address) and why.endswith(expected)
    assert InputPolicy().address_refusal(address) is None  # only public_only checks addresses


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "93.184.216.34"])
def test_public_addresses_pass(address: str) -> None:
    assert InputPolicy(public_only=True).address_refusal(address) is None


def test_trusted_networks_never_include_metadata() -> None:
    policy = InputPolicy(public_only=True, trusted_networks=("10.1.0.0/16", "169.254.0.0/16"))
    assert policy.address_refusal("10.1.2.3") is None
    assert policy.address_refusal("10.2.0.1") == "10.2.0.1 is not a public address (private)"
    assert policy.address_refusal("169.254.1.1") is None
    assert "cloud metadata" in (policy.address_refusal("169.254.169.254") or "")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"schemes": "http"}, TypeError, "inputs: expected a set of scheme names"),
        ({"schemes": [3]}, TypeError, "inputs: expected scheme names such as 's3'"),
        ({"public_only": "yes"}, TypeError, "inputs: public_only: expected True or False"),
        ({"trusted_networks": ["10.0.0.0/33"]}, ValueError, "inputs: trusted_networks"),
    ],
)
def test_bad_policies(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        InputPolicy(**kwargs)


def test_scheme_names_are_normalised_and_the_policy_is_data() -> None:
    policy = InputPolicy(["HTTPS://", " s3 "], trusted_networks=["10.0.0.0/8"])
    assert policy.schemes == frozenset({"https", "s3"})
    assert pickle.loads(pickle.dumps(policy)) == policy  # travels to Ray workers
    assert ModelSpec(inputs=policy).inputs == policy
    assert ModelSpec().inputs == DEFAULT_POLICY
    with pytest.raises(TypeError, match="inputs: expected an InputPolicy"):
        ModelSpec(inputs="public")  # type: ignore[arg-type]


def test_the_policy_in_force_is_per_thread_and_block() -> None:
    service = InputPolicy.public_urls()
    seen: list[InputPolicy] = []
    with using(service):
        assert in_force() is service and in_force(DEFAULT_POLICY) is DEFAULT_POLICY
        thread = threading.Thread(target=lambda: seen.append(in_force()))
        thread.start()
        thread.join()
    assert in_force() is DEFAULT_POLICY and seen == [DEFAULT_POLICY]
