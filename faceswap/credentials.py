"""C2PA Content Credentials: sign every output as AI-composited media, and read them back (`faceswap verify`)."""
from __future__ import annotations

import datetime
import io
import json
import logging
import os
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

from faceswap import atomic
from faceswap.errors import FaceswapError
from faceswap.version import __version__

log = logging.getLogger(__name__)

# IPTC's digital source type for media with parts replaced by a trained model (what the EU AI Act asks marked)
AI_COMPOSITE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
ASSERTION = "org.faceswap.provenance"
LOCAL_NAME = "faceswap local signer"
MIME = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".avi": "video/x-msvideo",
        ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
        ".mkv": "video/x-matroska", ".webm": "video/webm"}
SIDECAR_ONLY = {".mkv", ".webm"}  # formats the C2PA library cannot embed into: a .c2pa file beside them


def config_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "faceswap"


def manifest_path(output: Path) -> Path:
    """faceswap's JSON manifest of an output: beside a file, inside an image folder."""
    output = Path(output)
    return output / "faceswap-manifest.json" if output.suffix == "" else output.with_name(output.name + ".json")


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".c2pa")


@dataclass
class Signing:
    """A certificate chain (PEM) and its private key, checked to belong together."""
    chain: bytes
    key: bytes = field(repr=False)
    algorithm: str

    @cached_property
    def signer(self):  # one per output, reused for each of its images
        import c2pa

        return c2pa.Signer.from_info(c2pa.C2paSignerInfo(self.algorithm.encode(), self.chain, self.key, None))


def _algorithm(key) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}.get(key.curve.name, "")
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    return "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else ""


def load_signing(cert: Path | None = None, key: Path | None = None) -> Signing:
    """The user's certificate and key (options, else config_dir()/signing.json), else the local ones made once."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if cert is None and key is None and (config_dir() / "signing.json").is_file():
        try:
            named = json.loads((config_dir() / "signing.json").read_text())
            cert, key = Path(named["cert"]).expanduser(), Path(named["key"]).expanduser()
        except (ValueError, KeyError, TypeError):
            raise FaceswapError(f"{config_dir() / 'signing.json'}: must name \"cert\" and \"key\" files") from None
    if (cert is None) != (key is None):
        raise FaceswapError("signing needs both --sign-cert and --sign-key")
    if cert is None:
        cert, key = local_identity()
    try:
        chain, key_pem = Path(cert).read_bytes(), Path(key).read_bytes()
    except OSError as exc:
        raise FaceswapError(f"{exc.filename}: cannot read the signing file ({exc.strerror})") from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise FaceswapError(f"{key}: not an unencrypted PEM private key") from None
    try:
        leaf = x509.load_pem_x509_certificates(chain)[0]
    except ValueError:
        raise FaceswapError(f"{cert}: not a PEM certificate chain") from None
    algorithm = _algorithm(private)
    if not algorithm:
        raise FaceswapError(f"{key}: C2PA signs with EC P-256/384/521, RSA or Ed25519 keys only")
    der = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf.public_key().public_bytes(*der) != private.public_key().public_bytes(*der):
        raise FaceswapError(f"{key}: this key does not belong to the certificate {Path(cert).name}")
    return Signing(chain, key_pem, algorithm)


def local_identity() -> tuple[Path, Path]:
    """A local CA and a signer certificate it issued, made once in the config folder, the key readable by the user
    only. (C2PA refuses a self-signed signer, hence the two.) Readers report the signer as untrusted."""
    folder = config_dir() / "c2pa"
    cert, key = folder / "signer-chain.pem", folder / "signer-key.pem"
    if cert.is_file() and key.is_file():
        return cert, key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with atomic.shared_or_exclusive(folder / ".signer.lock", shared=False):  # parallel first runs wait here
        if cert.is_file() and key.is_file():  # another process made them meanwhile
            return cert, key
        now = datetime.datetime.now(datetime.timezone.utc)

        def certificate(subject, issuer, public, signing_key, ca: bool):  # the extensions C2PA's profile requires
            usage = dict(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)
            built = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=3650))
                     .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
                     .add_extension(x509.KeyUsage(**usage), critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))
            if not ca:
                built = (built.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
                         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                             signing_key.public_key()), False))
            return built.sign(signing_key, hashes.SHA256())

        def name(common):
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                              x509.NameAttribute(NameOID.ORGANIZATION_NAME, "faceswap, unverified")])

        ca_key, signer_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca = certificate(name("faceswap local CA"), name("faceswap local CA"), ca_key.public_key(), ca_key, True)
        leaf = certificate(name(LOCAL_NAME), ca.subject, signer_key.public_key(), ca_key, False)
        pem = signer_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
        partial = atomic.partial_path(key)
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
            handle.write(pem)
        os.replace(partial, key)
        atomic.write_bytes(cert, leaf.public_bytes(serialization.Encoding.PEM)
                           + ca.public_bytes(serialization.Encoding.PEM))
    log.warning("made a local C2PA signing key in %s (readers will show the signer as untrusted; "
                "give --sign-cert/--sign-key to sign as yourself)", folder)
    return cert, key


def definition(title: str, source_name: str, source_sha256: str | None, facts: dict) -> dict:
    """The manifest: edited by faceswap into AI-composited media, the input as parent ingredient by name and hash,
    and faceswap's own facts (model and face set hashes) as an assertion."""
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    edited = {"action": "c2pa.edited", "digitalSourceType": AI_COMPOSITE, "when": when,
              "softwareAgent": {"name": "faceswap", "version": __version__},
              "description": "One or more faces were replaced by a face-swap autoencoder."}
    parent = {"title": source_name, "relationship": "parentOf",
              **({"instance_id": f"sha256:{source_sha256}"} if source_sha256 else {})}
    return {"claim_generator_info": [{"name": "faceswap", "version": __version__}], "title": title,
            "ingredients": [parent],
            "assertions": [{"label": "c2pa.actions", "data": {"actions": [edited]}},
                           {"label": ASSERTION, "data": dict(facts, synthetic=True, created=when)}]}


@lru_cache(maxsize=1)
def _context():
    import c2pa

    # no thumbnail: the library's own costs far more time and bytes per frame than the signature
    return c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})


def _builder(manifest: dict):
    import c2pa

    builder = c2pa.Builder(manifest, context=_context())
    builder.set_intent(c2pa.C2paBuilderIntent.EDIT)
    return builder


def seal_file(path: Path, manifest: dict, signing: Signing, sidecar_for: Path | None = None) -> None:
    """Embed credentials into the file at `path` in place (atomically); for a format C2PA cannot embed into, write
    them to the .c2pa sidecar of `sidecar_for` (the final name)."""
    import c2pa

    path = Path(path)
    suffix = (sidecar_for or path).suffix.lower()
    builder = _builder(manifest)
    try:
        if suffix in SIDECAR_ONLY:
            builder.set_no_embed()
            with open(path, "rb") as source:
                store = builder.sign(signing.signer, MIME[suffix], source, io.BytesIO())
            atomic.write_bytes(sidecar_path(sidecar_for or path), store)
            return
        sealed = atomic.partial_path(path)
        try:
            with open(path, "rb") as source, open(sealed, "w+b") as dest:
                builder.sign(signing.signer, MIME.get(suffix, "video/mp4"), source, dest)
            os.replace(sealed, path)
        finally:
            atomic.discard(sealed)
    except c2pa.C2paError as exc:
        raise FaceswapError(f"{sidecar_for or path}: cannot add content credentials ({exc})") from None


def seal_bytes(data: bytes, mime: str, manifest: dict, signing: Signing) -> bytes:
    import c2pa

    out = io.BytesIO()
    try:
        _builder(manifest).sign(signing.signer, mime, io.BytesIO(data), out)
    except c2pa.C2paError as exc:
        raise FaceswapError(f"cannot add content credentials ({exc})") from None
    return out.getvalue()


STATES = ("tampered", "changed", "unreadable", "absent", "intact")  # worst first


@dataclass
class Credentials:
    """What a file's C2PA manifest says, and whether it still matches the file."""
    state: str  # one of STATES
    where: str = ""  # embedded or sidecar
    synthetic: bool = False
    tool: str = ""
    date: str = ""
    signer: str = ""
    trusted: bool = False
    problems: list[str] = field(default_factory=list)


def read(path: Path) -> Credentials:
    import c2pa

    path = Path(path)
    sidecar = sidecar_path(path)
    try:
        if sidecar.is_file() and path.suffix.lower() in SIDECAR_ONLY:
            with open(path, "rb") as stream:
                reader = c2pa.Reader(MIME[path.suffix.lower()], stream, manifest_data=sidecar.read_bytes())
                report, where = json.loads(reader.json()), "sidecar"
        else:
            report, where = json.loads(c2pa.Reader(path).json()), "embedded"
    except c2pa.C2paError as exc:
        text = f"{type(exc).__name__} {exc}"
        if "ManifestNotFound" in text or "JUMBF" in text:
            return Credentials("absent")
        if "NotSupported" in text:  # a format that holds none embedded, and no sidecar beside it
            return Credentials("absent", problems=[f"no {sidecar.name} beside it"])
        return Credentials("unreadable", problems=[str(exc).splitlines()[0]])
    active = report.get("manifests", {}).get(report.get("active_manifest"), {})
    codes = [status["code"] for status in report.get("validation_status", [])]
    problems = [code for code in codes if code != "signingCredential.untrusted"]
    actions = [action for assertion in active.get("assertions", []) if assertion["label"].startswith("c2pa.actions")
               for action in assertion["data"].get("actions", [])]
    agent = next((a.get("softwareAgent") for a in actions if a.get("softwareAgent")), None) or \
        (active.get("claim_generator_info") or [{}])[0]
    signature = active.get("signature_info", {})
    synthetic = any(a.get("digitalSourceType", "").rsplit("/", 1)[-1] in
                    ("compositeWithTrainedAlgorithmicMedia", "trainedAlgorithmicMedia") for a in actions)
    return Credentials(
        "tampered" if problems else "intact", where, synthetic,
        " ".join(filter(None, [agent.get("name"), agent.get("version")])) if isinstance(agent, dict) else str(agent),
        next((a["when"] for a in actions if a.get("when")), signature.get("time", "")),
        ", ".join(filter(None, [signature.get("common_name"), signature.get("issuer")])),
        "signingCredential.untrusted" not in codes, problems)


@dataclass
class Sealer:
    """What a writer calls to add one output's credentials: into the finished video, or into each image."""
    manifest: dict
    signing: Signing

    def file(self, partial: Path, final: Path) -> None:
        seal_file(partial, dict(self.manifest, title=Path(final).name), self.signing, sidecar_for=final)

    def image(self, data: bytes, name: str) -> bytes:
        return seal_bytes(data, "image/png", dict(self.manifest, title=name), self.signing)


def verify(path: Path) -> tuple[Credentials, str]:
    """A file's (or each image's of a folder) credentials, and what faceswap's JSON manifest says of its bytes."""
    path = Path(path)
    if not path.exists():
        raise FaceswapError(f"{path}: no such file or folder")
    if path.is_dir():
        frames = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not frames:
            raise FaceswapError(f"{path}: no images in this folder")
        found = [read(frame) for frame in frames]
        worst = min(found, key=lambda c: STATES.index(c.state))
        bad = sum(c.state != "intact" for c in found)
        return worst, f"{len(found)} images, {len(found) - bad} intact" + (f", {bad} not" if bad else "")
    found = read(path)
    record = manifest_path(path)
    if not record.is_file():
        return found, "no JSON manifest beside it"
    try:
        recorded = json.loads(record.read_text()).get("output", {}).get("sha256")
    except ValueError:
        return found, f"{record.name}: unreadable"
    if recorded == atomic.sha256_of(path):
        return found, f"{record.name}: the file's sha256 matches the manifest's"
    if found.state == "intact":  # C2PA's hash leaves some boxes out; the manifest's covers every byte
        found.state = "changed"
        found.problems.append(f"its bytes differ from those {record.name} records")
    return found, f"{record.name}: the file's sha256 differs from the manifest's"


def describe(path: Path, found: Credentials, manifest_note: str) -> str:
    """`faceswap verify`'s report on one file."""
    problems = ", ".join(found.problems)
    heads = {"absent": "no content credentials (never signed, or stripped by a re-encode or an upload"
                       + "".join(f"; {p}" for p in found.problems) + ")",
             "unreadable": f"cannot be read as media ({problems})", "tampered": f"TAMPERED: {problems}",
             "changed": f"CHANGED since faceswap wrote it: credentials valid, but {problems}"}
    lines = [f"{path}: {heads.get(found.state, f'content credentials intact ({found.where}, signature valid)')}"]
    if found.state in ("intact", "tampered", "changed"):
        trust = "trusted" if found.trusted else "untrusted: not on a C2PA trust list" + \
            ("; faceswap's local signer" if LOCAL_NAME in found.signer else "")
        lines += [f"  synthetic  {'yes (AI-composited: ' + AI_COMPOSITE.rsplit('/', 1)[-1] + ')' if found.synthetic else 'no'}",
                  f"  tool       {found.tool or '?'}", f"  date       {found.date or '?'}",
                  f"  signer     {found.signer or '?'} ({trust})",
                  f"  file hash  {'does not match' if found.state == 'tampered' else 'matches the credentials'}"]
    lines.append(f"  manifest   {manifest_note}")
    return "\n".join(lines)
