"""Shared by the recording tests: RSA key pairs as a tenant would hold them."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def rsa_pem_pair(bits: int = 2048) -> tuple[bytes, bytes]:
    """A fresh ``(public PEM, private PEM)`` pair: SubjectPublicKeyInfo, unencrypted PKCS#8."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public, private
