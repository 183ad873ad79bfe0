"""Provenance fixtures made in the test run: a throwaway ES256 certificate chain, files signed with C2PA
content credentials by it, XMP and PNG generator metadata (no binary files in git, no network)."""

from __future__ import annotations

import datetime
import io
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, PngImagePlugin

from deepfake_service.samples import imagegen

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"


@dataclass(frozen=True)
class Chain:
    root_pem: str
    chain_pem: str  # leaf, then root
    key_pem: str


def _name(common: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Studio")])


def make_chain() -> Chain:
    """A new root CA and a leaf that C2PA accepts for signing: digitalSignature key usage, emailProtection
    extended key usage, subject and authority key identifiers."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.timezone.utc)
    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
                 encipher_only=False, decipher_only=False)

    def certificate(subject, issuer, public_key, signing_key, ca: bool):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **usage), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
        if not ca:
            builder = (builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                       .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False))
        return builder.sign(signing_key, hashes.SHA256())

    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = certificate(_name("Test Root CA"), _name("Test Root CA"), root_key.public_key(), root_key, ca=True)
    leaf = certificate(_name("Test Generator"), root.subject, leaf_key.public_key(), root_key, ca=False)

    def pem(cert) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    key = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return Chain(pem(root), pem(leaf) + pem(root), key)


@lru_cache(maxsize=1)
def chain() -> Chain:
    """The run's one signing chain."""
    return make_chain()


def signed(payload: bytes, mime: str, source_type: str = "trainedAlgorithmicMedia", remote_url: str | None = None) -> bytes:
    """``payload`` with C2PA content credentials whose c2pa.created action declares ``source_type``; with
    ``remote_url`` the manifest is not embedded, only a reference to that URL (XMP dcterms:provenance)."""
    import c2pa

    keys = chain()
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, keys.chain_pem.encode(), keys.key_pem.encode(), None))
    manifest = {"claim_generator_info": [{"name": "test-generator", "version": "1.0"}], "title": "generated",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created", "digitalSourceType": IPTC + source_type}]}}]}
    context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    output = io.BytesIO()
    with c2pa.Builder(manifest, context=context) as builder:
        if remote_url:
            builder.set_no_embed()
            builder.set_remote_url(remote_url)
        builder.sign(signer, mime, io.BytesIO(payload), output)
    return output.getvalue()


def tampered(signed_jpeg: bytes) -> bytes:
    """One byte of the image data changed after signing (the last bytes before the end-of-image marker)."""
    data = bytearray(signed_jpeg)
    data[-10] ^= 0xFF
    return bytes(data)


def malformed(signed_jpeg: bytes) -> bytes:
    """The manifest store's bytes scrambled in the middle, the JPEG itself intact."""
    data = bytearray(signed_jpeg)
    start = data.index(b"c2pa") + 64
    for offset in range(start, start + 200):
        data[offset] ^= 0x5A
    return bytes(data)


def xmp_jpeg(source_type: str = "trainedAlgorithmicMedia") -> bytes:
    packet = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              '<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
              f'Iptc4xmpExt:DigitalSourceType="{IPTC}{source_type}"/></rdf:RDF></x:xmpmeta>')
    return imagegen.encode(imagegen.pattern(64, 64, seed=7), "JPEG", quality=90, xmp=packet.encode())


def parameters_png(prompt: str = "portrait photo of a person, " * 30) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", prompt + "\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1")
    return imagegen.encode(imagegen.pattern(64, 64, seed=8), "PNG", pnginfo=info)


def plain_jpeg() -> bytes:
    return imagegen.encode(Image.new("RGB", (64, 64), (90, 120, 150)), "JPEG", quality=90)
