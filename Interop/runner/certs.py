"""Certificates for the runner: a self-signed leaf, or a chain (leaf + intermediates) whose size
pushes a server's first flight over the 3x amplification limit (the amplificationlimit case)."""
import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, subject_key, issuer, issuer_key, is_ca, leaf_names=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(subject_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if leaf_names:
        alternative = [x509.DNSName(n) for n in leaf_names if not n[0].isdigit() and ":" not in n]
        alternative += [x509.IPAddress(ipaddress.ip_address(n)) for n in leaf_names
                        if n[0].isdigit() or ":" in n]
        builder = builder.add_extension(x509.SubjectAlternativeName(alternative), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_certificates(directory, chain_length=1):
    """Writes cert.pem (leaf first, then intermediates) and priv.key; returns directory."""
    os.makedirs(directory, exist_ok=True)
    names = ("server", "localhost", "127.0.0.1", "::1")
    if chain_length <= 1:
        key = ec.generate_private_key(ec.SECP256R1())
        chain = [_certificate("server", key, "server", key, False, names)]
    else:
        keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(chain_length)]
        # keys[0] is the root; each next certificate is issued by the one before; the last is the leaf.
        certificates = [_certificate("root", keys[0], "root", keys[0], True)]
        for i in range(1, chain_length):
            leaf = i == chain_length - 1
            subject = "server" if leaf else f"intermediate {i}"
            certificates.append(_certificate(subject, keys[i], certificates[-1].subject.rfc4514_string()[3:],
                                             keys[i - 1], not leaf, names if leaf else ()))
        key = keys[-1]
        chain = list(reversed(certificates[1:]))  # leaf, intermediates (the root is not sent)
    with open(os.path.join(directory, "cert.pem"), "wb") as f:
        for certificate in chain:
            f.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(directory, "priv.key"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return directory
