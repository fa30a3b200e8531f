# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers of the kmip key-provider tests: a throwaway PKI made with the
openssl command, pykmip-server processes on loopback ports, an independent
KMIP client (PyKMIP's ProxyKmipClient), misbehaving servers, a scripted KMS
that answers Locate and Get Attributes from a table (for what pykmip-server
never answers: Destroyed keys, repeated ids, refused batches, huge
listings), and a driver for tests/kmip/kmip_tool (one provider instance,
commands on stdin).

Server processes are started in their own session and stopped by their
process-group id (our child's pid): SIGTERM, then SIGKILL after two seconds
(pykmip-server needs about ten seconds to exit on SIGTERM); kill() sends
SIGKILL at once, as a crash would. Every helper object registers itself with
a Cleanup so the fixtures stop everything even when a test fails.
"""
import os
import queue
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

BUILD_DIR = Path(os.environ.get("VMC_BUILD_DIR",
                                Path(__file__).resolve().parents[2] / "build-kmip"))
TOOL = Path(os.environ.get("VMC_KMIP_TOOL", BUILD_DIR / "tests" / "kmip" / "kmip_tool"))
PLUGINS = BUILD_DIR / "plugins"
PYTHON = "/usr/bin/python3"
PYKMIP_SERVER = "/usr/bin/pykmip-server"
VECTORS = Path(__file__).resolve().parent / "vectors"
START_TIMEOUT = 30.0


def run(cmd, **kw):
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=60, **kw)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed:\n{p.stdout}\n{p.stderr}")
    return p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cleanup:
    """Things to stop at the end, most recent first."""

    def __init__(self):
        self.items = []

    def add(self, obj):
        self.items.append(obj)
        return obj

    def close(self):
        errors = []
        for obj in reversed(self.items):
            try:
                obj.close()
            except Exception as e:  # keep stopping the others
                errors.append(f"{obj!r}: {e}")
        self.items = []
        return errors


# --- A throwaway PKI -------------------------------------------------------------

class Certs:
    """CA, server certificate (SAN IP:127.0.0.1, DNS:localhost), client
    certificates with and without EKU clientAuth, a second CA with its own
    client certificate, and broken material for configuration tests."""

    CLIENT_CN = "vmcryptfs-client"

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ca("ca", "vmcryptfs-test-ca")
        self._ca("ca2", "another-ca")
        self._leaf("server", "ca", "127.0.0.1",
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\n"
                   "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        client_ext = ("keyUsage=critical,digitalSignature,keyEncipherment\n"
                      "extendedKeyUsage=clientAuth\n")
        self._leaf("client", "ca", self.CLIENT_CN, client_ext)
        self._leaf("noeku", "ca", self.CLIENT_CN,
                   "keyUsage=critical,digitalSignature,keyEncipherment\n")
        self._leaf("other", "ca2", self.CLIENT_CN, client_ext)
        # An encrypted copy of the client key, a file that is not PEM.
        run(["openssl", "pkey", "-in", self.key("client"), "-aes256", "-passout", "pass:secret",
             "-out", self.dir / "client-enc.key"])
        (self.dir / "garbage.pem").write_text("this is not a certificate\n")
        for k in self.dir.glob("*.key"):
            k.chmod(0o600)

    def _ca(self, name, cn):
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
             "-days", "2", "-keyout", self.key(name), "-out", self.crt(name), "-subj", f"/CN={cn}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    def _leaf(self, name, ca, cn, ext):
        extfile = self.dir / f"{name}.ext"
        extfile.write_text("basicConstraints=CA:FALSE\n" + ext)
        csr = self.dir / f"{name}.csr"
        run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-sha256",
             "-keyout", self.key(name), "-out", csr, "-subj", f"/CN={cn}"])
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.crt(ca), "-CAkey", self.key(ca),
             "-CAcreateserial", "-days", "2", "-sha256", "-extfile", extfile,
             "-out", self.crt(name)])
        csr.unlink()

    def crt(self, name):
        return self.dir / f"{name}.crt"

    def key(self, name):
        return self.dir / f"{name}.key"


# --- pykmip-server -----------------------------------------------------------------

class KmipServer:
    """One pykmip-server process (config per tests/kmip README and kmip.md
    section 6). Servers given the same db share their keys (a replicating
    cluster)."""

    def __init__(self, workdir, name, certs, db):
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "policies").mkdir(exist_ok=True)   # explicit and empty
        self.name = name
        self.certs = certs
        self.db = db
        self.port = None
        self.proc = None
        self.log = self.dir / "server.log"

    def __repr__(self):
        return f"<pykmip-server {self.name} port {self.port} pid {self.pid}>"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def _write_conf(self):
        conf = self.dir / "server.conf"
        conf.write_text(
            "[server]\n"
            "hostname=127.0.0.1\n"
            f"port={self.port}\n"
            f"certificate_path={self.certs.crt('server')}\n"
            f"key_path={self.certs.key('server')}\n"
            f"ca_path={self.certs.crt('ca')}\n"
            "auth_suite=TLS1.2\n"
            f"policy_path={self.dir / 'policies'}\n"
            "enable_tls_client_auth=True\n"
            "logging_level=INFO\n"
            f"database_path={self.db}\n")
        return conf

    def start(self):
        """Start (or restart on the same port) and wait until it serves."""
        assert self.proc is None
        for attempt in range(3):
            if self.port is None or attempt:
                self.port = free_port()
            conf = self._write_conf()
            offset = self.log.stat().st_size if self.log.exists() else 0
            out = open(self.dir / "stdout.log", "ab")
            self.proc = subprocess.Popen([PYTHON, PYKMIP_SERVER, "-f", conf, "-l", self.log],
                                         cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=out, start_new_session=True)
            out.close()
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                text = self.log.read_text(errors="replace")[offset:] if self.log.exists() else ""
                if "Starting connection service" in text:
                    return self
                if "failed to bind" in text or self.proc.poll() is not None:
                    break
                time.sleep(0.05)
            self.kill()
        raise AssertionError(f"pykmip-server {self.name} did not start; see {self.log}")

    def _signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)   # the session we started: server and helpers
        except ProcessLookupError:
            pass

    def kill(self):
        """Stop at once (SIGKILL), as a crash would."""
        if self.proc is None:
            return
        self._signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def close(self):
        """SIGTERM, then SIGKILL if still running after 2 s."""
        if self.proc is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        self._signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None


class Cluster:
    """Two pykmip-servers sharing one database."""

    def __init__(self, workdir, certs, cleanup):
        self.certs = certs
        self.db = Path(workdir) / "pykmip.db"
        self.servers = [KmipServer(workdir, f"kms{i}", certs, self.db) for i in (1, 2)]
        cleanup.add(self)

    def __repr__(self):
        return f"<cluster {self.servers}>"

    def close(self):
        """Stop both: SIGTERM to each, SIGKILL to what still runs 2 s later."""
        running = [s for s in self.servers if s.proc is not None]
        for s in running:
            s._signal(signal.SIGTERM)
        deadline = time.monotonic() + 2
        for s in running:
            try:
                s.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            s.kill()

    def start(self):
        # Start both at once: each takes a second or two, mostly imports.
        errors = []
        threads = [threading.Thread(target=lambda s=s: _collect(errors, s.start))
                   for s in self.servers if s.proc is None]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return self

    def __getitem__(self, i):
        return self.servers[i]


def _collect(errors, fn):
    try:
        fn()
    except Exception as e:
        errors.append(e)


# --- The independent client ------------------------------------------------------------

class Client:
    """PyKMIP's ProxyKmipClient over KMIP 1.1 with the test client certificate."""

    def __init__(self, server, certs, workdir):
        from kmip.pie.client import ProxyKmipClient
        from kmip.core import enums
        conf = Path(workdir) / "pykmip-client.conf"
        conf.write_text("[client]\n")
        self.enums = enums
        self.client = ProxyKmipClient(
            hostname="127.0.0.1", port=server.port, cert=str(certs.crt("client")),
            key=str(certs.key("client")), ca=str(certs.crt("ca")),
            ssl_version="PROTOCOL_TLSv1_2", config_file=str(conf),
            kmip_version=enums.KMIPVersion.KMIP_1_1)

    def __enter__(self):
        self.client.open()
        return self

    def __exit__(self, *a):
        self.client.close()

    def key(self, uid):
        """The key's bytes and its (algorithm, length)."""
        k = self.client.get(uid)
        return k.value, (k.cryptographic_algorithm, k.cryptographic_length)

    def attributes(self, uid):
        _, attrs = self.client.get_attributes(uid, ["Name", "State"])
        out = {}
        for a in attrs:
            name = a.attribute_name.value
            v = a.attribute_value
            out[name] = v.name_value.value if name == "Name" else v.value
        return out

    def locate(self, name):
        from kmip.core.factories.attributes import AttributeFactory
        from kmip.core.attributes import Name
        attr = AttributeFactory().create_attribute(
            self.enums.AttributeType.NAME,
            Name.create(name, self.enums.NameType.UNINTERPRETED_TEXT_STRING))
        return self.client.locate(attributes=[attr])

    def create(self, name=None):
        return self.client.create(self.enums.CryptographicAlgorithm.AES, 256, name=name)

    def revoke(self, uid, compromised=False):
        code = (self.enums.RevocationReasonCode.KEY_COMPROMISE if compromised
                else self.enums.RevocationReasonCode.CESSATION_OF_OPERATION)
        kw = {"compromise_occurrence_date": int(time.time())} if compromised else {}
        self.client.revoke(code, uid, **kw)

    def destroy(self, uid):
        self.client.destroy(uid)

    def objects(self):
        """Every symmetric key this identity sees, from PyKMIP's own Locate and
        Get Attributes: {uid: ([names], state name)}."""
        from kmip.core.factories.attributes import AttributeFactory
        attr = AttributeFactory().create_attribute(
            self.enums.AttributeType.OBJECT_TYPE, self.enums.ObjectType.SYMMETRIC_KEY)
        out = {}
        for uid in self.client.locate(attributes=[attr]):
            _, attrs = self.client.get_attributes(uid, ["Name", "State"])
            names = [a.attribute_value.name_value.value for a in attrs
                     if a.attribute_name.value == "Name"]
            state = [a.attribute_value.value.name for a in attrs
                     if a.attribute_name.value == "State"]
            out[uid] = (names, state[0])
        return out


# --- Misbehaving servers ------------------------------------------------------------------

class BadServer:
    """A loopback listener that misbehaves in one of these ways:

    refuse       nothing listens (the port is reserved, then closed)
    http         plain TCP; answers the ClientHello with an HTTP error
    tcp-silent   accepts, never says anything (handshake time-out)
    tls-silent   completes TLS, reads the request, never answers
    tls-garbage  completes TLS, answers text that is not KMIP
    tls-midclose completes TLS, sends 20 bytes of a Get answer, closes
    tls-trickle  completes TLS, sends an answer one byte every 0.3 s
    proxy-mute   forwards to @target but drops the server's application data
                 (the request is executed, the answer never arrives)
    proxy-drop   forwards to @target; closes a connection when its client sends
                 a request (TLS application data) more than 0.5 s after the
                 previous one (a connection the KMS dropped while it was idle,
                 seen only once the next request is on its way)
    proxy-die    forwards @die_after requests to @target, then dies at the next
                 one: closes every connection and stops listening (a server
                 that goes down halfway through a series of requests)
    """

    def __init__(self, mode, certs, target=None, die_after=None):
        self.mode = mode
        self.certs = certs
        self.target = target
        self.die_after = die_after
        self.forwarded = 0
        self.stop_ev = threading.Event()
        self.conns = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        if mode == "refuse":
            self.sock.close()
            self.thread = None
            return
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def __repr__(self):
        return f"<BadServer {self.mode} port {self.port}>"

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def _track(self, s):
        with self.lock:
            self.conns.append(s)
        return s

    def _serve(self):
        while not self.stop_ev.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            self._track(c)
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _tls(self, c):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certs.crt("server"), self.certs.key("server"))
        ctx.load_verify_locations(self.certs.crt("ca"))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        c.settimeout(10)
        return self._track(ctx.wrap_socket(c, server_side=True))

    def _read_request(self, t):
        hdr = b""
        while len(hdr) < 8:
            d = t.recv(8 - len(hdr))
            if not d:
                return False
            hdr += d
        left = int.from_bytes(hdr[4:8], "big")
        while left:
            d = t.recv(min(left, 4096))
            if not d:
                return False
            left -= len(d)
        return True

    def _idle(self, s):
        while not self.stop_ev.wait(0.1):
            pass

    def _conn(self, c):
        t = None
        try:
            if self.mode == "http":
                c.recv(4096)
                c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                return
            if self.mode == "tcp-silent":
                return self._idle(c)
            if self.mode.startswith("proxy"):
                return self._proxy(c)
            t = self._tls(c)
            while self._read_request(t):
                if self.mode == "tls-silent":
                    return self._idle(t)
                if self.mode == "tls-garbage":
                    t.sendall(b"This is not a KMIP server. Go away.\n" * 3)
                elif self.mode == "tls-midclose":
                    resp = bytes.fromhex((VECTORS / "02-get.resp.hex").read_text().replace(
                        "\n", ""))
                    t.sendall(resp[:20])
                    return
                elif self.mode == "tls-trickle":
                    resp = bytes.fromhex((VECTORS / "02-get.resp.hex").read_text().replace(
                        "\n", ""))
                    for b in resp:
                        if self.stop_ev.wait(0.3):
                            return
                        t.sendall(bytes([b]))
        except (OSError, ssl.SSLError):
            pass
        finally:
            for s in (t, c):
                try:
                    if s is not None:
                        s.close()
                except OSError:
                    pass

    @staticmethod
    def _records(buf, data):
        """Split a TLS byte stream into whole records: (records, rest)."""
        buf += data
        out = []
        while len(buf) >= 5:
            n = 5 + int.from_bytes(buf[3:5], "big")
            if len(buf) < n:
                break
            out.append(buf[:n])
            buf = buf[n:]
        return out, buf

    def _proxy(self, c):
        up = self._track(socket.create_connection(("127.0.0.1", self.target.port), timeout=5))
        from_client, from_server = b"", b""
        last_app = None   # when the client last sent application data (a request)
        socks = [c, up]
        try:
            while not self.stop_ev.is_set():
                r, _, _ = select.select(socks, [], [], 0.1)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is c:
                        recs, from_client = self._records(from_client, data)
                        for rec in recs:
                            if rec[0] == 23:    # application data: a request
                                now = time.monotonic()
                                if (self.mode == "proxy-drop" and last_app is not None
                                        and now - last_app > 0.5):
                                    return      # closed "while idle"
                                if (self.mode == "proxy-die"
                                        and self.forwarded >= self.die_after):
                                    self.sock.close()   # refuse from now on
                                    return
                                self.forwarded += 1
                                last_app = now
                            up.sendall(rec)
                    else:
                        recs, from_server = self._records(from_server, data)
                        for rec in recs:
                            if self.mode == "proxy-mute" and rec[0] == 23:
                                continue        # the answer is lost
                            c.sendall(rec)
        finally:
            c.close()
            up.close()

    def close(self):
        self.stop_ev.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for s in self.conns:
                try:
                    s.close()
                except OSError:
                    pass
        if self.thread:
            self.thread.join(timeout=5)


# --- A scripted KMS ---------------------------------------------------------------------------

def ttlv(tag, typ, val):
    """One TTLV item (KMIP 1.1 section 9.1): tag, type, length, padded value."""
    return struct.pack(">II", tag << 8 | typ, len(val)) + val + bytes(-len(val) % 8)


def t_struct(tag, *children):
    return ttlv(tag, 0x01, b"".join(children))


def t_int(tag, v):
    return ttlv(tag, 0x02, struct.pack(">i", v))


def t_enum(tag, v):
    return ttlv(tag, 0x05, struct.pack(">I", v))


def t_text(tag, s):
    return ttlv(tag, 0x07, s.encode())


def t_bytes(tag, b):
    return ttlv(tag, 0x08, b)


def t_parse(b):
    """[(tag, type, value)]: structures as lists, Integer and Enumeration as
    int, Text String as str, the rest as bytes."""
    out, off = [], 0
    while off < len(b):
        tt, n = struct.unpack_from(">II", b, off)
        tag, typ, val = tt >> 8, tt & 0xff, b[off + 8:off + 8 + n]
        if typ == 0x01:
            val = t_parse(val)
        elif typ in (0x02, 0x05):
            val = struct.unpack(">i" if typ == 0x02 else ">I", val)[0]
        elif typ == 0x07:
            val = val.decode()
        out.append((tag, typ, val))
        off += 8 + n + (-n % 8)
    return out


def t_find(items, tag):
    return [v for t, _, v in items if t == tag]


class FakeKms(BadServer):
    """A TLS server that answers Locate and Get Attributes (batched or not)
    from a table, the way a KMS that keeps destroyed keys would:

    keys      {uid: (names, state)}, state a KMIP State number (2 Active,
              5 Destroyed ...), or {uid: "denied"} for Permission Denied;
              Get Attributes of an id not in it is Item Not Found
    locate    the ids Locate answers, in order (default: the table's)
    locate_reason  answer Locate with this Result Reason instead (0x02
              Response Too Large)
    refuse_batches  answer a message of several Batch Items with one
              message-level Invalid Message, as PyKMIP does without batch ids
    bad_batch_id   answer batch items with an id that was not sent

    It records the requests: self.requests [(operation, payload)] per batch
    item, self.batches [Batch Count], self.max_items [Maximum Items].
    """

    def __init__(self, certs, keys, locate=None, locate_reason=None, refuse_batches=False,
                 bad_batch_id=False):
        self.keys = keys
        self.locate = list(keys) if locate is None else locate
        self.locate_reason = locate_reason
        self.refuse_batches = refuse_batches
        self.bad_batch_id = bad_batch_id
        self.requests, self.batches, self.max_items = [], [], []
        super().__init__("fake", certs)

    def __repr__(self):
        return f"<FakeKms port {self.port}>"

    @staticmethod
    def _message(items):
        hdr = t_struct(0x42007A, t_struct(0x420069, t_int(0x42006A, 1), t_int(0x42006B, 1)),
                       ttlv(0x420092, 0x09, struct.pack(">Q", int(time.time()))),
                       t_int(0x42000D, len(items)))
        return t_struct(0x42007B, hdr, *items)

    @staticmethod
    def _failed(reason, text, op=None, batch_id=None):
        parts = [t_enum(0x42005C, op)] if op is not None else []
        if batch_id is not None:
            parts.append(t_bytes(0x420093, batch_id))
        parts += [t_enum(0x42007F, 1), t_enum(0x42007E, reason), t_text(0x42007D, text)]
        return t_struct(0x42000F, *parts)

    def _answer(self, op, payload, batch_id):
        ok = [t_enum(0x42005C, op)]
        if batch_id is not None:
            ok.append(t_bytes(0x420093, b"\0\0\0\x63" if self.bad_batch_id else batch_id))
        ok.append(t_enum(0x42007F, 0))
        if op == 0x08:
            self.max_items += t_find(payload, 0x42004F)
            if self.locate_reason is not None:
                return self._failed(self.locate_reason, "scripted failure", op, batch_id)
            return t_struct(0x42000F, *ok, t_struct(0x42007C, *[t_text(0x420094, u)
                                                              for u in self.locate]))
        uid = t_find(payload, 0x420094)[0]
        key = self.keys.get(uid)
        if key is None:
            return self._failed(0x01, f"Could not locate object: {uid}", op, batch_id)
        if key == "denied":
            return self._failed(0x0C, "Access denied", op, batch_id)
        names, state = key
        attrs = [t_struct(0x420008, t_text(0x42000A, "Name"), t_int(0x420009, i),
                          t_struct(0x42000B, t_text(0x420055, n), t_enum(0x420054, 1)))
                 for i, n in enumerate(names)]
        attrs.append(t_struct(0x420008, t_text(0x42000A, "State"), t_enum(0x42000B, state)))
        return t_struct(0x42000F, *ok, t_struct(0x42007C, t_text(0x420094, uid), *attrs))

    def _respond(self, request):
        msg = t_parse(request)[0][2]
        items = t_find(msg, 0x42000F)
        self.batches.append(len(items))
        if self.refuse_batches and len(items) > 1:
            return self._message([self._failed(0x04, "Batch items are not supported.")])
        out = []
        for item in items:
            op = t_find(item, 0x42005C)[0]
            payload = t_find(item, 0x420079)[0]
            bid = t_find(item, 0x420093)
            self.requests.append((op, payload))
            out.append(self._answer(op, payload, bid[0] if bid else None))
        return self._message(out)

    def _conn(self, c):
        t = None
        try:
            t = self._tls(c)
            while True:
                hdr = self._recv(t, 8)
                if hdr is None:
                    return
                body = self._recv(t, int.from_bytes(hdr[4:8], "big"))
                if body is None:
                    return
                t.sendall(self._respond(hdr + body))
        except (OSError, ssl.SSLError):
            pass
        finally:
            for s in (t, c):
                try:
                    if s is not None:
                        s.close()
                except OSError:
                    pass

    @staticmethod
    def _recv(t, n):
        b = b""
        while len(b) < n:
            d = t.recv(min(n - len(b), 65536))
            if not d:
                return None
            b += d
        return b


# --- The plugin driver -----------------------------------------------------------------------

def config_text(servers, certs, provider="kms", cert="client", ca="ca", key=None, extra="",
                policy=True):
    """A vmcryptfs configuration with one kmip provider (and a policy on it)."""
    lines = [f'key-provider "{provider}" {{', '\ttype = "kmip"']
    if servers:
        lines.append("\tserver = {" + ", ".join(f'"{s}"' for s in servers) + "}")
    def named(x):   # a bare name is one of the test certificates
        return "/" not in str(x)

    if ca:
        lines.append(f'\tca = "{certs.crt(ca) if named(ca) else ca}"')
    if cert:
        lines.append(f'\tcert = "{certs.crt(cert) if named(cert) else cert}"')
    key = key or (certs.key(cert) if cert and named(cert) else None)
    if key:
        lines.append(f'\tkey = "{key}"')
    if extra:
        lines.append(extra)
    lines.append("}")
    if policy:
        lines += ['policy "vm-encryption" {', f'\tprovider = "{provider}"', "\tdisks = true", "}"]
    return "\n".join(lines) + "\n"


class Result:
    def __init__(self, line, reports, keys=()):
        self.line = line
        self.reports = reports
        self.keys = list(keys)      # list: [(id, label or None)]
        m = re.match(r"(ok|err)(?: (E\w+) (\d+))? (.*?)\s*ms=([\d.]+)(?: msg=(.*))?$", line)
        assert m, f"unexpected tool output: {line!r}"
        self.ok = m.group(1) == "ok"
        self.errno_name = m.group(2)
        self.errno = int(m.group(3)) if m.group(3) else 0
        self.fields = dict(kv.split("=", 1) for kv in m.group(4).split() if "=" in kv)
        self.ms = float(m.group(5))
        self.msg = m.group(6) or ""

    def __repr__(self):
        return self.line

    @property
    def id(self):
        return self.fields.get("id")

    @property
    def fp(self):
        return self.fields.get("fp")


class Tool:
    """kmip_tool on one configuration: open() at start, then commands."""

    def __init__(self, workdir, config, provider="kms", name="tool"):
        self.dir = Path(workdir)
        self.conf = self.dir / f"{name}.conf"
        self.conf.write_text(config)
        self.stderr_path = self.dir / f"{name}.stderr"
        self.err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([TOOL, "-v", PLUGINS, self.conf, provider],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, bufsize=1)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.opened = self._result(timeout=10)

    def __repr__(self):
        return f"<kmip_tool {self.conf}>"

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _line(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"kmip_tool gave no answer in {timeout} s\n{self.log()}")
        if line is None:
            raise AssertionError(f"kmip_tool exited ({self.proc.wait()})\n{self.log()}")
        return line

    def _result(self, timeout):
        reports, keys = [], []
        while True:
            line = self._line(timeout)
            if line.startswith("report: "):
                reports.append(line[8:])
                continue
            if line.startswith("key: "):
                uid, tab, label = line[5:].partition("\t")
                keys.append((uid, label if tab else None))
                continue
            return Result(line, reports, keys)

    def cmd(self, line, timeout=60):
        assert self.proc.poll() is None, self.log()
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._result(timeout)

    def create(self, label, **kw):
        return self.cmd(f"create {label}", **kw)

    def get(self, uid, **kw):
        return self.cmd(f"get {uid}", **kw)

    def test(self, **kw):
        return self.cmd("test", **kw)

    def list(self, prefix="", **kw):
        return self.cmd(f"list {prefix}".rstrip(), **kw)

    def log(self):
        self.err.flush()
        return self.stderr_path.read_text(errors="replace")

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"kmip_tool did not exit\n{self.log()}")
        log = self.log()
        self.err.close()
        rc = self.proc.returncode
        want = 0 if self.opened.ok else 1
        assert rc == want, f"kmip_tool exited with {rc}\n{log}"
        sanitizer = re.compile(r"==\d+==ERROR|runtime error:|LeakSanitizer")
        assert not sanitizer.search(log), log


def have_pykmip():
    if not os.path.exists(PYKMIP_SERVER) or not shutil.which("openssl"):
        return False
    try:
        import kmip  # noqa: F401
    except ImportError:
        return False
    return True
