"""C2PA Content Credentials in every output, read back by c2pa's own reader and by `faceswap verify`."""
from __future__ import annotations

import json
import stat

import c2pa
import pytest

from faceswap import credentials, media
from faceswap.atomic import sha256_of
from faceswap.settings import ConvertSettings
from faceswap.swap.convert import convert
from helpers import run_cli


@pytest.fixture(scope="module")
def signed_b(sample_b, small_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("signed") / "b_as_a.mp4"
    convert(sample_b, small_model, out, ConvertSettings(direction="b2a"), progress=False)
    return out


def active(report: dict) -> dict:
    return report["manifests"][report["active_manifest"]]


def test_c2pa_reader_finds_valid_ai_composite_claims(signed_b, sample_b, small_model, config_home):
    reader = c2pa.Reader(signed_b)
    report = json.loads(reader.json())
    assert reader.get_validation_state() == "Valid"  # intact; "Trusted" would need a trust list
    assert [s["code"] for s in report["validation_status"]] == ["signingCredential.untrusted"]
    manifest = active(report)
    actions = [a for x in manifest["assertions"] if x["label"].startswith("c2pa.actions") for a in x["data"]["actions"]]
    edited = next(a for a in actions if a["action"] == "c2pa.edited")
    assert edited["digitalSourceType"] == credentials.AI_COMPOSITE and edited["softwareAgent"]["name"] == "faceswap"
    facts = next(x["data"] for x in manifest["assertions"] if x["label"] == credentials.ASSERTION)
    assert facts["model"]["files_sha256"]["model.safetensors"] == sha256_of(small_model / "model.safetensors")
    assert facts["input"]["sha256"] == sha256_of(sample_b) and facts["input"]["name"] == sample_b.name
    assert manifest["ingredients"][0]["instance_id"] == f"sha256:{sha256_of(sample_b)}"
    text = reader.json() + signed_b.with_name(signed_b.name + ".json").read_text()
    for private in (str(sample_b.parent), str(small_model.parent), str(signed_b.parent), str(config_home)):
        assert private not in text  # names and hashes, never paths
    assert b"PRIVATE KEY" not in signed_b.read_bytes()
    key = config_home / "faceswap" / "c2pa" / "signer-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_verify_intact_tampered_and_reencoded(signed_b, tmp_path, make_clip):
    result = run_cli("verify", signed_b)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "intact" in result.stdout and "synthetic  yes" in result.stdout and "faceswap" in result.stdout
    assert "untrusted" in result.stdout and "sha256 matches" in result.stdout

    data = bytearray(signed_b.read_bytes())
    data[data.find(b"mdat") + 20000] ^= 0x01  # one bit of the video data
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    result = run_cli("verify", tampered)
    assert result.returncode == 1 and "TAMPERED" in result.stdout and "bmffHash.mismatch" in result.stdout

    reencoded = tmp_path / "reencoded.mp4"
    make_clip("-i", signed_b, "-c:v", "libx264", "-c:a", "copy", reencoded)
    result = run_cli("verify", reencoded)
    assert result.returncode == 1 and "no content credentials" in result.stdout
    assert run_cli("verify", tmp_path / "missing.mp4").returncode == 1


def test_image_folder_and_mkv_outputs_carry_credentials(sample_b, small_model, tmp_path):
    frames = tmp_path / "frames"
    convert(sample_b, small_model, frames, ConvertSettings(), progress=False)
    images = sorted(frames.glob("*.png"))
    assert len(images) == 72
    for image in (images[0], images[-1]):  # per image, embedded
        assert c2pa.Reader(image).get_validation_state() == "Valid"
    mkv = tmp_path / "out.mkv"
    convert(sample_b, small_model, mkv, ConvertSettings(), progress=False)
    assert credentials.sidecar_path(mkv).is_file()  # Matroska takes no embedded manifest: a .c2pa beside it
    result = run_cli("verify", frames, mkv)
    assert result.returncode == 0, result.stdout
    assert "72 images, 72 intact" in result.stdout and "(sidecar, signature valid)" in result.stdout
    alone, junk = tmp_path / "alone.mkv", tmp_path / "junk.mp4"
    alone.write_bytes(mkv.read_bytes())  # without its sidecar
    junk.write_bytes(b"not a video")
    data = bytearray(mkv.read_bytes())
    data[len(data) // 2] ^= 0x01
    changed = tmp_path / "changed" / "out.mkv"
    changed.parent.mkdir()
    changed.write_bytes(bytes(data))
    (changed.parent / "out.c2pa").write_bytes(credentials.sidecar_path(mkv).read_bytes())
    (frames / "frame_999999.png").write_bytes(b"not a picture")  # one bad image fails the whole folder
    bad_folder = run_cli("verify", frames)
    assert bad_folder.returncode == 1 and bad_folder.stdout.startswith(f"{frames}: cannot be read as media")
    result = run_cli("verify", alone, junk, changed)
    assert result.returncode == 1
    assert "alone.mkv: no content credentials" in result.stdout and "no alone.c2pa beside it" in result.stdout
    assert "junk.mp4: cannot be read as media" in result.stdout
    assert "out.mkv: TAMPERED: assertion.dataHash.mismatch" in result.stdout


def test_own_certificate_and_bad_keys(sample_b, small_model, tmp_path):
    import os

    theirs = tmp_path / "theirs"
    env = dict(os.environ, XDG_CONFIG_HOME=str(theirs))
    os.environ["XDG_CONFIG_HOME"], saved = str(tmp_path / "maker"), os.environ["XDG_CONFIG_HOME"]
    try:
        cert, key = credentials.local_identity()  # a chain made elsewhere stands in for the user's own
    finally:
        os.environ["XDG_CONFIG_HOME"] = saved
    out = tmp_path / "own.mp4"
    result = run_cli("convert", sample_b, "-m", small_model, "-o", out, "--sign-cert", cert, "--sign-key", key,
                     env=env)
    assert result.returncode == 0, result.stderr
    assert not (theirs / "faceswap" / "c2pa").exists()  # no local key made when the user gives one
    assert c2pa.Reader(out).get_validation_state() == "Valid"
    assert str(key) not in out.with_name("own.mp4.json").read_text()

    for bad_key, says in ((tmp_path / "missing.pem", "cannot read the signing file"),
                          (cert, "not an unencrypted PEM private key")):
        out = tmp_path / "bad.mp4"
        result = run_cli("convert", sample_b, "-m", small_model, "-o", out, "--sign-cert", cert,
                         "--sign-key", bad_key, env=env)
        assert result.returncode == 1 and says in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not out.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]
    assert media.probe(tmp_path / "own.mp4").frames == 72


def test_verify_says_when_a_byte_outside_the_c2pa_hash_changed(signed_b, tmp_path):
    """C2PA's hash leaves the ftyp box out, as the standard says; the JSON manifest's sha256 covers every byte."""
    import shutil

    changed = tmp_path / "changed.mp4"
    data = bytearray(signed_b.read_bytes())
    data[data.find(b"ftyp") + 6] ^= 0x01  # a byte of the brand
    changed.write_bytes(bytes(data))
    shutil.copy(credentials.manifest_path(signed_b), credentials.manifest_path(changed))
    result = run_cli("verify", changed)
    assert result.returncode == 1 and "CHANGED since faceswap wrote it" in result.stdout
    assert "sha256 differs from the manifest's" in result.stdout
