"""The bundle checks (pure): a good bundle passes; every kind of bad one is refused with its code and reason."""
import struct
import zipfile

import pytest

from benchbus_update import bundle
from benchbus_update.bundle import BundleError, Limits

DEFAULT_LIMITS = Limits()


def check(path, key, required=True, limits=DEFAULT_LIMITS):
    checked = bundle.check(path, key, required, "OT-2 Standard", limits)
    bundle.verify_hash(checked)
    return checked


@pytest.fixture
def public(rsa_key):
    return rsa_key.public_key()


def test_a_good_rsa_bundle_passes(bundle_file, public, rootfs, tools):
    checked = check(bundle_file(), public)
    assert checked.signed and checked.rootfs_size == len(rootfs)
    assert checked.expected_sha256 == tools.sha256_hex(rootfs)
    assert checked.version["buildroot_version"] == "v2"


def test_an_ed25519_signed_bundle_passes(bundle_file, ed_key, rootfs, tools):
    path = bundle_file(tools.bundle_members(rootfs, ed_key))
    assert check(path, ed_key.public_key()).signed


def test_a_deflated_bundle_passes(bundle_file, public, rootfs, rsa_key, tools):
    path = bundle_file(tools.bundle_members(rootfs, rsa_key), method=zipfile.ZIP_DEFLATED)
    assert check(path, public).rootfs_size == len(rootfs)


def test_the_key_may_be_an_x509_certificate(tmp_path, rsa_key):
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "benchbus test signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(rsa_key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(rsa_key, hashes.SHA256()))
    key = bundle.load_public_key(cert.public_bytes(serialization.Encoding.PEM))
    assert key.public_numbers() == rsa_key.public_key().public_numbers()


def test_unsigned_bundle_passes_when_signatures_are_not_required(bundle_file, rootfs, tools):
    checked = check(bundle_file(tools.bundle_members(rootfs)), None, required=False)
    assert not checked.signed


def refused(path, key, required=True, limits=DEFAULT_LIMITS) -> BundleError:
    with pytest.raises(BundleError) as caught:
        check(path, key, required, limits)
    return caught.value


def test_no_signature_when_required(bundle_file, public, rootfs, tools):
    error = refused(bundle_file(tools.bundle_members(rootfs)), public)
    assert error.code == "File Missing" and "rootfs.ext4.hash.sig" in error.message and "required" in error.message


def test_no_key_configured_but_signatures_required(bundle_file):
    error = refused(bundle_file(), None)
    assert error.code == "Signature Mismatch" and "no signing key" in error.message


def test_signature_by_another_key(bundle_file, public, rootfs, other_rsa_key, tools):
    error = refused(bundle_file(tools.bundle_members(rootfs, other_rsa_key)), public)
    assert error.code == "Signature Mismatch" and "not a valid RSA" in error.message


def test_signature_of_other_content(bundle_file, public, rootfs, rsa_key, tools):
    members = tools.bundle_members(rootfs, rsa_key)
    members["rootfs.ext4.hash.sig"] = tools.sign(rsa_key, b"0" * 64)
    assert refused(bundle_file(members), public).code == "Signature Mismatch"


def test_hash_mismatch(bundle_file, public, rootfs, rsa_key, tools):
    members = tools.bundle_members(rootfs, rsa_key)
    members["rootfs.ext4"] = rootfs[:-1] + b"X"  # the image changed after it was hashed and signed
    error = refused(bundle_file(members), public)
    assert error.code == "Hash Mismatch" and tools.sha256_hex(rootfs) in error.message


def test_hash_file_that_is_not_a_hash(bundle_file, public, rootfs, rsa_key, tools):
    members = tools.bundle_members(rootfs, rsa_key)
    members["rootfs.ext4.hash"] = b"not a hash"
    members["rootfs.ext4.hash.sig"] = tools.sign(rsa_key, b"not a hash")
    error = refused(bundle_file(members), public)
    assert error.code == "Hash Mismatch" and "lowercase hex" in error.message


def test_uppercase_hex_is_refused(bundle_file, public, rootfs, rsa_key, tools):
    hash_text = tools.sha256_hex(rootfs).upper().encode()
    members = {"rootfs.ext4": rootfs, "rootfs.ext4.hash": hash_text,
               "rootfs.ext4.hash.sig": tools.sign(rsa_key, hash_text)}
    assert refused(bundle_file(members), public).code == "Hash Mismatch"


@pytest.mark.parametrize("name, reason", [
    ("../rootfs.ext4", "'..'"),
    ("/etc/shadow", "absolute"),
    ("sub/../../x", "'..'"),
    ("C:evil", "absolute"),
    ("a\\b", "backslash"),
])
def test_member_path_that_escapes(bundle_file, public, rootfs, rsa_key, tools, name, reason):
    members = tools.bundle_members(rootfs, rsa_key)
    members[name] = b"x"
    error = refused(bundle_file(members), public)
    assert error.code == "Unsafe Path" and reason in error.message and repr(name) in error.message


def test_extra_member(bundle_file, public, rootfs, rsa_key, tools):
    members = tools.bundle_members(rootfs, rsa_key)
    members["notes.txt"] = b"hello"
    error = refused(bundle_file(members), public)
    assert error.code == "Unexpected File" and "notes.txt" in error.message


def test_duplicate_member(tmp_path, public, rootfs, rsa_key, tools):
    path = tmp_path / "dup.zip"
    members = tools.bundle_members(rootfs, rsa_key)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
            archive.writestr("rootfs.ext4.hash", b"0" * 64)
    error = refused(path, public)
    assert error.code == "Unexpected File" and "twice" in error.message


@pytest.mark.parametrize("missing", ["rootfs.ext4", "rootfs.ext4.hash"])
def test_missing_member(bundle_file, public, rootfs, rsa_key, tools, missing):
    members = tools.bundle_members(rootfs, rsa_key)
    del members[missing]
    error = refused(bundle_file(members), public)
    assert error.code == "File Missing" and missing in error.message


def test_wrong_robot_type(bundle_file, public, rootfs, rsa_key, tools):
    error = refused(bundle_file(tools.bundle_members(rootfs, rsa_key, {"robot_type": "OT-3 Standard"})), public)
    assert error.code == "Invalid Robot Type" and "OT-3 Standard" in error.message


def test_version_file_that_is_not_json(bundle_file, public, rootfs, rsa_key, tools):
    members = tools.bundle_members(rootfs, rsa_key)
    members["VERSION.json"] = b"{nope"
    assert refused(bundle_file(members), public).code == "Bad Version File"


def test_declared_size_over_the_limit(bundle_file, public):
    error = refused(bundle_file(), public, limits=Limits(max_image_bytes=1000))
    assert error.code == "Too Large" and "limit is 1000" in error.message


def _lie_about_size(path, name: str, declared: int) -> None:
    """Patch the uncompressed size of `name` in its local header and the central directory."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    struct.pack_into("<I", data, info.header_offset + 22, declared)
    index = 0
    while True:
        central = data.find(b"PK\x01\x02", index)
        assert central >= 0, "member not found in the central directory"
        name_length = struct.unpack_from("<H", data, central + 28)[0]
        if bytes(data[central + 46: central + 46 + name_length]) == name.encode():
            struct.pack_into("<I", data, central + 24, declared)
            break
        index = central + 4
    path.write_bytes(bytes(data))


def test_zip_bomb_that_inflates_past_its_declared_size(bundle_file, public, rsa_key, tools):
    zeros = bytes(8 * 1024 * 1024)  # deflates to a few kB; we claim it is 1 MB
    path = bundle_file(tools.bundle_members(zeros, rsa_key), method=zipfile.ZIP_DEFLATED)
    _lie_about_size(path, "rootfs.ext4", 1024 * 1024)
    error = refused(path, public)
    assert error.code == "Zip Bomb" and "declared 1048576" in error.message


def test_member_shorter_than_declared(bundle_file, public, rootfs, rsa_key, tools):
    path = bundle_file(tools.bundle_members(rootfs, rsa_key), method=zipfile.ZIP_DEFLATED)
    _lie_about_size(path, "rootfs.ext4", len(rootfs) + 100)
    error = refused(path, public)
    assert error.code == "Zip Bomb" and f"declares {len(rootfs) + 100} bytes but holds {len(rootfs)}" in error.message


def test_not_a_zip(tmp_path, public):
    path = tmp_path / "x.zip"
    path.write_bytes(b"this is not a zip file at all" * 10)
    assert refused(path, public).code == "Bad Zip"


def test_corrupted_image_bytes_fail_the_crc(bundle_file, public):
    path = bundle_file()
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("rootfs.ext4")
    data[info.header_offset + 30 + len("rootfs.ext4") + 5000] ^= 0xFF
    path.write_bytes(bytes(data))
    error = refused(path, public)
    assert error.code in ("Hash Mismatch", "Bad Zip")
