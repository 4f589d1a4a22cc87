"""SSH keys: validation, fingerprints as ssh-keygen prints them, the file, the link-local rule, the bus."""
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from benchbus import BusError
from benchbus_update import sshkeys


def openssh(public_key, comment: str | None = "me@laptop") -> str:
    line = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}" if comment else line


@pytest.fixture(scope="module")
def keys():
    return {
        "rsa2048": openssh(rsa.generate_private_key(65537, 2048).public_key()),
        "rsa1024": openssh(rsa.generate_private_key(65537, 1024).public_key()),
        "ecdsa": openssh(ec.generate_private_key(ec.SECP256R1()).public_key()),
        "ecdsa384": openssh(ec.generate_private_key(ec.SECP384R1()).public_key()),
        "ed25519": openssh(ed25519.Ed25519PrivateKey.generate().public_key()),
        "ed25519b": openssh(ed25519.Ed25519PrivateKey.generate().public_key(), comment=None),
    }


@pytest.mark.parametrize("name, bits", [("rsa2048", 2048), ("ecdsa", 256), ("ecdsa384", 384), ("ed25519", 256)])
def test_accepted_keys(keys, name, bits):
    key = sshkeys.parse(keys[name])
    assert key.bits == bits and key.comment == "me@laptop" and key.line == keys[name]


def test_short_rsa_is_refused_with_its_size(keys):
    with pytest.raises(sshkeys.InvalidKey, match="1024 bits; at least 2048"):
        sshkeys.parse(keys["rsa1024"])


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_dsa_is_refused():
    line = openssh(dsa.generate_private_key(1024).public_key())
    with pytest.raises(sshkeys.InvalidKey, match="DSA"):
        sshkeys.parse(line)


def test_options_with_quoted_spaces_and_a_comment(keys):
    line = 'from="10.0.0.1,fe80::/10",command="echo hi there",no-pty ' + keys["ed25519"]
    key = sshkeys.parse(line)
    assert key.options == 'from="10.0.0.1,fe80::/10",command="echo hi there",no-pty'
    assert key.type == "ssh-ed25519" and key.comment == "me@laptop"


def test_unclosed_quote_in_options(keys):
    with pytest.raises(sshkeys.InvalidKey, match="unclosed"):
        sshkeys.parse('command="oops ' + keys["ed25519"])


def test_one_trailing_newline_is_fine_an_inner_one_is_not(keys):
    assert sshkeys.parse(keys["ed25519"] + "\n").line == keys["ed25519"]
    assert sshkeys.parse(keys["ed25519"] + "\r\n").line == keys["ed25519"]
    with pytest.raises(sshkeys.InvalidKey, match="line break"):
        sshkeys.parse(keys["ed25519"] + "\n" + keys["ecdsa"])
    with pytest.raises(sshkeys.InvalidKey, match="line break"):
        sshkeys.parse(keys["ed25519"] + "\n\n")


@pytest.mark.parametrize("line, reason", [
    ("", "empty"),
    ("   \n", "empty"),
    ("ssh-ed25519", "needs a type and base64"),
    ("ssh-ed25519 !!!notbase64!!!", "not valid base64"),
    ("ssh-foo AAAA", "unknown key type"),
    ("# a comment", "comment"),
])
def test_invalid_lines(line, reason):
    with pytest.raises(sshkeys.InvalidKey, match=reason):
        sshkeys.parse(line)


def test_a_label_that_does_not_match_the_key_data(keys):
    blob = keys["ed25519"].split()[1]
    with pytest.raises(sshkeys.InvalidKey, match="does not decode"):
        sshkeys.parse(f"ssh-rsa {blob}")


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) is not installed")
def test_fingerprint_is_what_ssh_keygen_prints(tmp_path, keys):
    for name in ("rsa2048", "ecdsa", "ed25519"):
        path = tmp_path / f"{name}.pub"
        path.write_text(keys[name] + "\n")
        printed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)], capture_output=True,
                                 text=True, check=True).stdout.split()[1]
        assert sshkeys.parse(keys[name]).fingerprint == printed


@pytest.mark.parametrize("address, allowed", [
    ("169.254.10.20", True), ("fe80::1", True), ("fe80::1%eth0", True), ("[fe80::abcd]", True),
    ("::ffff:169.254.1.1", True), ("192.168.1.5", False), ("127.0.0.1", False), ("::1", False), ("", False),
    ("not-an-ip", False), (None, False),
])
def test_link_local(address, allowed):
    assert sshkeys.is_link_local(address) is allowed


def test_file_add_list_idempotent_remove_clear(tmp_path, keys):
    path = tmp_path / "ssh" / "authorized_keys"
    path.parent.mkdir()
    path.write_text("# kept: a comment someone wrote\n")
    store = sshkeys.AuthorizedKeys(path)
    first, added = store.add(keys["ed25519"])
    assert added
    again, added_again = store.add(keys["ed25519"].rsplit(" ", 1)[0] + " other-comment")  # same key data
    assert not added_again and again.fingerprint == first.fingerprint
    second, _ = store.add(keys["rsa2048"])
    assert [k.fingerprint for k in store.list()] == [first.fingerprint, second.fingerprint]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    store.remove(first.md5)  # the OT-2's id
    store.remove(second.fingerprint)  # ours
    with pytest.raises(sshkeys.NotFound):
        store.remove(second.fingerprint)
    store.add(keys["ecdsa"])
    assert store.clear() == 1
    assert path.read_text() == "# kept: a comment someone wrote\n"


# -- over HTTP and the bus ---------------------------------------------------------------------------------------


def test_a_forwarded_header_from_an_untrusted_address_is_ignored(running, keys, tools):
    """Issue 15, attack 7: nothing proxies in front of the update-agent by default, so X-Host-IP is a claim."""
    http = running.http
    forged = http.post("/server/ssh_keys", json={"key": keys["ed25519"]}, headers={"X-Host-IP": "169.254.1.1"})
    assert forged.status_code == 403 and forged.json()["error"] == "bad-interface"
    assert "127.0.0.1" in forged.json()["message"]  # judged by the address the request really came to
    authorized_keys = running.agent.settings.authorized_keys
    assert not authorized_keys.exists() or authorized_keys.read_text() == ""
    assert http.get("/server/ssh_keys", headers={"X-Host-IP": "fe80::1"}).status_code == 403


def test_http_key_management_only_over_link_local_or_with_the_token(start_agent, keys, tools):
    running = start_agent(trusted_proxies=["127.0.0.1/32"])  # nginx on loopback sets X-Host-IP
    http = running.http
    refused = http.get("/server/ssh_keys")
    assert refused.status_code == 403 and refused.json()["error"] == "bad-interface"
    assert http.get("/server/ssh_keys", headers={"X-Host-IP": "192.168.1.5"}).status_code == 403
    link_local = {"X-Host-IP": "169.254.3.4"}  # what nginx sets: the address the client reached
    added = http.post("/server/ssh_keys", json={"key": keys["ed25519"]}, headers=link_local)
    assert added.status_code == 201 and added.json()["id"].startswith("SHA256:")
    assert http.post("/server/ssh_keys", json={"key": keys["ed25519"]}, headers=link_local).status_code == 200
    token = {"Authorization": f"Bearer {tools.ADMIN_TOKEN}"}
    listed = http.get("/server/ssh_keys", headers=token).json()["public_keys"]
    assert [k["key"] for k in listed] == [keys["ed25519"]]
    assert http.get("/server/ssh_keys", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}).status_code == 403
    bad = http.post("/server/ssh_keys", json={"key": keys["rsa1024"]}, headers=link_local)
    assert bad.status_code == 400 and bad.json()["error"] == "bad-key" and "2048" in bad.json()["message"]
    missing = http.delete("/server/ssh_keys/0123456789abcdef0123456789abcdef", headers=link_local)
    assert missing.status_code == 404 and missing.json()["error"] == "invalid-key-hash"
    assert http.delete(f"/server/ssh_keys/{listed[0]['key_md5']}", headers=link_local).status_code == 200
    assert (running.agent.settings.authorized_keys).read_text() == ""


def test_bus_key_management_needs_the_admin_token(running, bus, keys, tools):
    with pytest.raises(BusError) as caught:
        bus.call("update", "add_ssh_key", {"key": keys["ecdsa"]})
    assert caught.value.code == "unauthorized"
    with pytest.raises(BusError) as caught:
        bus.call("update", "add_ssh_key", {"key": keys["rsa1024"], "admin_token": tools.ADMIN_TOKEN})
    assert caught.value.code == "invalid_request" and "key" in caught.value.message and "2048" in caught.value.message
    result = bus.call("update", "add_ssh_key", {"key": keys["ecdsa"], "admin_token": tools.ADMIN_TOKEN})
    assert result["key"]["type"] == "ecdsa-sha2-nistp256"
    listed = bus.call("update", "list_ssh_keys", {"admin_token": tools.ADMIN_TOKEN})["public_keys"]
    assert [k["id"] for k in listed] == [result["key"]["id"]]
    bus.call("update", "remove_ssh_key", {"id": result["key"]["id"], "admin_token": tools.ADMIN_TOKEN})
    with pytest.raises(BusError) as caught:
        bus.call("update", "remove_ssh_key", {"id": result["key"]["id"], "admin_token": tools.ADMIN_TOKEN})
    assert caught.value.code == "not_found"


def test_bus_key_management_is_off_without_a_configured_token(start_agent, bus, keys):
    start_agent(admin_token=None)
    with pytest.raises(BusError) as caught:
        bus.call("update", "list_ssh_keys", {"admin_token": "anything-at-all-long"})
    assert caught.value.code == "unauthorized" and "none is configured" in caught.value.message
