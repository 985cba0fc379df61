"""One connection description for every path (issue 15, point 13).

A unix-socket URL on a cluster that listens on no TCP port at all; a cluster that requires TLS with a
client certificate for the application's user (so a path that drops sslcert/sslkey/sslrootcert cannot
connect); a database whose name holds '='. Each is backed up by db_backup, whose pg_dump, server probe
and row counts all have to get the same description.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from support.ansible_run import REPO
from support.faults import PASSWORD_LOOKUP, PASSWORD_VARIABLE, run_module
from support.pgcluster import PgCluster, start_cluster

from .test_migrate_postgres import assert_no_secret, head_of

pytestmark = pytest.mark.slow

EQUITIES_INI = REPO / "migrations" / "equities" / "alembic.ini"
HEAD = head_of("equities")


def _restart_with(cluster: PgCluster, settings: dict[str, str]) -> None:
    """ALTER SYSTEM (postgresql.auto.conf wins over the include file pgcluster rewrites), then stop (the caller starts)."""
    conn = cluster.connect()
    try:
        with conn.cursor() as cur:
            for name, value in settings.items():
                cur.execute("ALTER SYSTEM SET %s = %%s" % name, (value,))
            cur.execute("CHECKPOINT")  # pgcluster stops with -m immediate and commits asynchronously: keep the app role
    finally:
        conn.close()
    cluster.stop()


def _chown_to_server(path: Path, cluster: PgCluster) -> None:
    if os.geteuid() == 0:
        info = cluster.data_dir.stat()
        os.chown(path, info.st_uid, info.st_gid)


def _run(cluster: PgCluster, name: str, args: dict[str, Any], tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    run, result = run_module(name, args, env={PASSWORD_VARIABLE: cluster.app_password, "TMPDIR": str(tmp_path)})
    assert_no_secret(run.output, [cluster])
    return run, result


def _backup_args(url: str, root: Path, **extra: Any) -> dict[str, Any]:
    args = {"url": url, "password": PASSWORD_LOOKUP, "backup_root": str(root), "environment": "prod", "host": "db1", "name": "equities"}
    args.update(extra)
    return args


# -- a unix socket, and no TCP at all ---------------------------------------------------
@pytest.fixture(scope="module")
def socket_only() -> Iterator[PgCluster]:
    cluster = start_cluster("sock-only")
    try:
        _restart_with(cluster, {"listen_addresses": ""})
        cluster.host = str(cluster.socket_dir)  # pgcluster's own connections (and listen_addresses, overridden) use it
        cluster.start()
        cluster.create_database("equities")
        yield cluster
    finally:
        cluster.destroy()


def test_a_unix_socket_url_reaches_the_database_on_every_path(socket_only: PgCluster, tmp_path: Path) -> None:
    cluster = socket_only
    url = "postgresql://%s@/equities?host=%s&port=%d" % (cluster.app_user, quote(str(cluster.socket_dir), safe="/"), cluster.port)
    run, result = _run(cluster, "alembic_upgrade", {"config": str(EQUITIES_INI), "url": url, "password": PASSWORD_LOOKUP}, tmp_path)
    assert run.rc == 0, run.output[-3000:]
    cluster.execute("INSERT INTO companies (ticker, company_name) SELECT 'S' || i, 'n' FROM generate_series(1, 50) AS i", dbname="equities")

    root = tmp_path / "backups"
    run, result = _run(cluster, "db_backup", _backup_args(url, root, revision=HEAD), tmp_path)
    assert run.rc == 0, run.output[-3000:]
    manifest = result["manifest"]
    assert manifest["server"] == "%s@%s:%d/equities" % (cluster.app_user, cluster.socket_dir, cluster.port)
    assert {"schema": "public", "table": "companies", "rows": 50} in [{k: t[k] for k in ("schema", "table", "rows")} for t in manifest["tables"]]
    assert Path(result["path"]).is_file()


# -- TLS: the CA to verify the server, a client certificate to be let in ------------------------
def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key: Any, issuer: tuple[str, Any] | None, *, ca: bool = False, names: tuple[str, ...] = ()) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        alternatives: list[Any] = [x509.DNSName(n) for n in names if not n[0].isdigit()]
        alternatives += [x509.IPAddress(ipaddress.ip_address(n)) for n in names if n[0].isdigit()]
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def _pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.PEM))


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class Tls:
    def __init__(self, cluster: PgCluster, files: dict[str, Path]) -> None:
        self.cluster = cluster
        self.files = files

    def url(self, dbname: str = "equities", *, rootcert: str = "ca", client: bool = True) -> str:
        query = "sslmode=verify-full&sslrootcert=%s" % self.files[rootcert]
        if client:
            query += "&sslcert=%s&sslkey=%s" % (self.files["client_cert"], self.files["client_key"])
        return "postgresql://%s@localhost:%d/%s?%s" % (self.cluster.app_user, self.cluster.port, quote(dbname, safe=""), query)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    """A cluster that lets the application's user in only over TLS with a client certificate signed by its CA."""
    pki = tmp_path_factory.mktemp("pki")
    ca_key, other_key, server_key, client_key = _key(), _key(), _key(), _key()
    ca = _certificate("fleet test CA", ca_key, None, ca=True)
    other_ca = _certificate("another CA", other_key, None, ca=True)
    files = {
        "ca": _write(pki / "ca.crt", _pem(ca)),
        "other_ca": _write(pki / "other-ca.crt", _pem(other_ca)),
        "client_cert": _write(pki / "client.crt", _pem(_certificate("migrator", client_key, ("fleet test CA", ca_key)))),
        "client_key": _write(pki / "client.key", _key_pem(client_key)),
    }
    cluster = start_cluster("tls")
    try:
        server_files = {
            "ssl_cert_file": _write(
                cluster.data_dir / "server.crt", _pem(_certificate("localhost", server_key, ("fleet test CA", ca_key), names=("localhost", "127.0.0.1")))
            ),
            "ssl_key_file": _write(cluster.data_dir / "server.key", _key_pem(server_key)),
            "ssl_ca_file": _write(cluster.data_dir / "root.crt", _pem(ca)),
        }
        for path in server_files.values():
            _chown_to_server(path, cluster)
        hba = cluster.data_dir / "pg_hba.conf"
        rules = "hostssl all %s 127.0.0.1/32 scram-sha-256 clientcert=verify-ca\nhost all %s all reject\n" % (cluster.app_user, cluster.app_user)
        hba.write_text(rules + hba.read_text())
        _restart_with(cluster, {"ssl": "on", **{name: str(path) for name, path in server_files.items()}})
        cluster.start()
        cluster.create_database("equities")
        cluster.create_database("eq=uities")
        yield Tls(cluster, files)
    finally:
        cluster.destroy()


def test_tls_options_reach_every_path_of_a_backup(tls: Tls, tmp_path: Path) -> None:
    cluster = tls.cluster
    run, _ = _run(cluster, "alembic_upgrade", {"config": str(EQUITIES_INI), "url": tls.url(), "password": PASSWORD_LOOKUP}, tmp_path)
    assert run.rc == 0, run.output[-3000:]
    root = tmp_path / "backups"
    run, result = _run(cluster, "db_backup", _backup_args(tls.url(), root, revision=HEAD), tmp_path)
    assert run.rc == 0, run.output[-3000:]
    assert Path(result["path"]).is_file() and result["manifest"]["tables"], result["manifest"]


def test_a_server_the_given_ca_did_not_sign_is_refused(tls: Tls, tmp_path: Path) -> None:
    """sslmode=verify-full with another CA: nothing may connect (a path that dropped the options would)."""
    root = tmp_path / "backups"
    url = tls.url(rootcert="other_ca")
    run, result = _run(tls.cluster, "db_backup", _backup_args(url, root, revision=HEAD, count_tables=0), tmp_path)
    assert run.rc != 0, run.output[-3000:]
    assert "certificate verify failed" in str(result.get("msg")), result.get("msg")
    assert not root.exists()


def test_a_database_name_holding_an_equals_sign_is_backed_up(tls: Tls, tmp_path: Path) -> None:
    cluster = tls.cluster
    cluster.execute("CREATE TABLE t (id int)", dbname="eq=uities")
    cluster.execute("GRANT SELECT ON t TO %s" % cluster.app_user, dbname="eq=uities")
    cluster.execute("INSERT INTO t SELECT generate_series(1, 7)", dbname="eq=uities")
    root = tmp_path / "backups"
    run, result = _run(cluster, "db_backup", _backup_args(tls.url("eq=uities"), root, revision=""), tmp_path)
    assert run.rc == 0, run.output[-3000:]
    manifest = result["manifest"]
    assert manifest["database"] == "eq=uities"
    assert [(t["table"], t["rows"]) for t in manifest["tables"]] == [("t", 7)]
