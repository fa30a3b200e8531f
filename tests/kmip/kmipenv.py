# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers of the kmip key-provider tests: a throwaway PKI made with the
openssl command, pykmip-server processes on loopback ports, an independent
KMIP client (PyKMIP's ProxyKmipClient), misbehaving servers, and a driver
for tests/kmip/kmip_tool (one provider instance, commands on stdin).

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
    """

    def __init__(self, mode, certs, target=None):
        self.mode = mode
        self.certs = certs
        self.target = target
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
    def __init__(self, line, reports):
        self.line = line
        self.reports = reports
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
        reports = []
        while True:
            line = self._line(timeout)
            if line.startswith("report: "):
                reports.append(line[8:])
                continue
            return Result(line, reports)

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
