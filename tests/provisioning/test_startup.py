"""A service's start leaves for later what it does not use (provisioning/startup.py), and
``provisioning up`` alone starts without the command line's modules, with the same
answers as through Typer."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

from provisioning.startup import _CertificatesAtFirstUse, certificates_at_first_use

ROOT = Path(__file__).resolve().parents[2]


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONING_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_a_deferred_module_is_imported_at_its_first_use_and_is_the_real_one_then() -> None:
    done = python(
        "import sys\n"
        "from provisioning.startup import lean_imports\n"
        "lean_imports()\n"
        "import surrealdb, shared.store.store\n"  # the SDK imports requests for its HTTP client
        "assert 'urllib3' not in sys.modules and 'charset_normalizer' not in sys.modules\n"
        "import surrealdb.connections.blocking_http as http\n"
        "assert http.requests.Session.__module__ == 'requests.sessions'\n"  # used: imported
        "import requests, requests.adapters\n"
        "assert sys.modules['requests'] is requests and type(requests).__name__ == 'module'\n"
        "from requests import get\n"
        "assert get is requests.api.get and http.requests.post is requests.post\n"
        "print('ok')\n"
    )
    assert done.stdout == "ok\n", done.stderr


def test_contexts_made_meanwhile_load_the_default_certificates_when_they_first_wrap() -> None:
    reference = ssl.create_default_context()
    with certificates_at_first_use() as made:
        verified = ssl.create_default_context()
        unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        unverified.set_default_verify_paths()
    assert made == [verified, unverified]
    assert type(verified) is _CertificatesAtFirstUse and type(unverified) is _CertificatesAtFirstUse
    after = ssl.create_default_context()  # the hook is gone
    assert type(after) is ssl.SSLContext and after.cert_store_stats() == reference.cert_store_stats()

    verified.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="example.org")
    assert type(verified) is ssl.SSLContext
    assert verified.cert_store_stats() == reference.cert_store_stats()
    assert verified.get_ca_certs() == reference.get_ca_certs()
    assert (verified.verify_mode, verified.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert unverified.get_ca_certs() == reference.get_ca_certs()  # any use loads them
    assert type(unverified) is ssl.SSLContext and unverified.verify_mode == ssl.CERT_NONE


def test_aiohttp_imported_lean_verifies_with_the_system_authorities() -> None:
    done = python(
        "import ssl\n"
        "from provisioning.startup import lean_imports\n"
        "lean_imports()\n"
        "import aiohttp.connector as c\n"
        "ref = ssl.create_default_context()\n"
        "ctx = c._SSL_CONTEXT_VERIFIED\n"
        "assert type(ctx).__name__ == '_CertificatesAtFirstUse'\n"
        "ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname='example.org')\n"
        "assert type(ctx) is ssl.SSLContext and ctx.get_ca_certs() == ref.get_ca_certs()\n"
        "print('ok')\n"
    )
    assert done.stdout == "ok\n", done.stderr


def test_up_alone_reads_the_settings_file_of_the_environment_like_the_option(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('[rate_limit]\nauht = "1/second"\n')
    common = {"PROVISIONING_DATA_DIR": str(tmp_path / "data"), "PROVISIONING_DB_URL": "mem://"}
    alone = python(
        "import sys; from provisioning.cli import main; sys.exit(main(['up']))",
        PROVISIONING_CONFIG=str(path),
        **common,
    )
    with_option = python(
        f"import sys; from provisioning.cli import main; sys.exit(main(['--config', {str(path)!r}, 'up']))",
        **common,
    )
    assert alone.returncode == with_option.returncode == 2
    assert alone.stderr == with_option.stderr
    assert alone.stderr.startswith("provisioning: invalid settings: `[rate_limit] auht`")
    assert "typer" not in alone.stderr


def test_up_alone_imports_nothing_of_the_command_line() -> None:
    done = python(
        "import sys\n"
        "from provisioning.cli import main\n"
        "main(['up'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'yaml')"
        " or m in ('provisioning.client', 'provisioning.cli.app')))\n",
        PROVISIONING_ORCHESTRATOR_PORT="abc",  # a bad setting: it stops before serving
    )
    assert done.stdout == "[]\n", done.stderr


def test_tune_malloc_caps_the_heaps_and_maps_big_blocks_apart() -> None:
    done = python(
        "import ctypes\n"
        "from provisioning.startup import tune_malloc\n"
        "class Info(ctypes.Structure):\n"
        "    _fields_ = [(n, ctypes.c_size_t) for n in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd',"
        " 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.mallinfo2.restype = Info\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "libc.free.argtypes = [ctypes.c_void_p]\n"
        "big = libc.malloc(1 << 20); libc.free(big)\n"  # glibc raises its threshold to 1 MiB here
        "assert tune_malloc(2, 128) == {'arena_max': True, 'mmap_threshold': True}\n"
        "before = libc.mallinfo2().hblks\n"
        "block = libc.malloc(256 << 10)\n"
        "assert libc.mallinfo2().hblks == before + 1\n"  # a mapping of its own
        "libc.free(block)\n"
        "assert libc.mallinfo2().hblks == before\n"  # and handed back
        "assert tune_malloc(0, 0) == {}\n"
        "print('ok')\n"
    )
    assert done.stdout == "ok\n", done.stderr


def test_a_start_imports_neither_jwt_nor_segno_and_both_work_at_their_first_use() -> None:
    done = python(
        "import sys\n"
        "from provisioning.startup import lean_imports\n"
        "lean_imports()\n"
        "import shared.settings, provisioning.server\n"  # every module a service's start imports
        "import control_center.mfa as mfa, shared.security.tokens as tokens\n"
        "assert type(sys.modules['jwt']).__name__ == '_Deferred', sys.modules['jwt']\n"
        "assert type(sys.modules['segno']).__name__ == '_Deferred'\n"
        "assert 'cryptography.x509' not in sys.modules and 'jwt.algorithms' not in sys.modules\n"
        "key = 'k' * 32\n"
        "token = tokens.jwt.encode({'sub': 'a'}, key, algorithm='HS256')\n"  # first use: imported
        "import jwt\n"
        "assert type(jwt).__name__ == 'module' and sys.modules['jwt'] is jwt\n"
        "assert jwt.decode(token, key, algorithms=['HS256']) == {'sub': 'a'}\n"
        "assert 'cryptography.x509' in sys.modules and tokens.jwt.PyJWTError is jwt.PyJWTError\n"
        "assert mfa.segno.make('otpauth://totp/x?secret=ABC').version >= 1\n"
        "assert type(sys.modules['segno']).__name__ == 'module'\n"
        "print('ok')\n"
    )
    assert done.stdout == "ok\n", done.stderr


def test_the_c_library_calls_of_a_start_run_no_subprocess() -> None:
    # ctypes.util.find_library("c") runs `ldconfig -p` in a subprocess, three per start
    done = python(
        "import subprocess, os\n"
        "def refused(*a, **k):\n"
        "    raise AssertionError('a subprocess')\n"
        "subprocess.Popen = refused\n"
        "os.posix_spawn = os.fork = refused\n"
        "from provisioning.startup import tune_malloc\n"
        "from orchestrator.command_runner import make_undumpable\n"
        "from orchestrator.memory import _TRIM\n"
        "from shared.libc import libc\n"
        "assert tune_malloc(2, 128) == {'arena_max': True, 'mmap_threshold': True}\n"
        "assert make_undumpable() and _TRIM is not None and _TRIM(0) in (0, 1)\n"
        "assert libc() is libc() and libc().getpid() == os.getpid()\n"
        "print('ok')\n"
    )
    assert done.stdout == "ok\n", done.stderr
