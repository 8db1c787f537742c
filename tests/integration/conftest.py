"""pytest glue for the mailtlsd integration tests.

    MAILTLSD=$PWD/build/mailtlsd python3 -m pytest tests/integration [-n 4]

- @case options (harness.py) become marks: `timeout` (pytest-timeout),
  `heavy`, `valgrind`; its params become parameters whose ids are the labels.
- The throwaway PKI is made once per run, before any test starts, in a
  directory shared with the pytest-xdist workers.
- Each test gets its own block of ports: its index in the collection plus
  an offset chosen at random once per run, so two runs at once (plain and
  sanitizer builds) keep apart.
- Heavy tests (bulk transfers, many sessions, the memory bound, timing) run
  alone: they are collected last and hold an exclusive lock on a file that
  every other test holds shared, whichever xdist worker runs them.
- The `t` fixture is the test's harness.Ctx; finishing it checks that every
  daemon is still alive, exits 0 on SIGTERM and printed no sanitizer report
  (a failure there is an error at teardown), and prints the daemons' log
  tails when the test failed.
"""

import fcntl
import inspect
import os
import random
import shutil
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from certs import Certs, generate  # noqa: E402

NBLOCKS = (32768 - harness.PORT_LOW) // harness.PORT_BLOCK


def daemon_binary():
    binary = os.environ.get("MAILTLSD") or os.path.join(
        HERE, "..", "..", "build", "mailtlsd")
    return os.path.abspath(binary)


# ------------------------------------------------ run-wide state (xdist)

def pytest_configure(config):
    config.addinivalue_line(
        "markers", "heavy: runs alone (CPU, memory or timing bound)")
    config.addinivalue_line(
        "markers", "valgrind: one of the scenarios make valgrind-check runs")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:         # an xdist worker: the controller's
        config.mailtlsd_session = workerinput["mailtlsd_session"]
        config.mailtlsd_offset = workerinput["mailtlsd_offset"]
        return
    config.mailtlsd_session = tempfile.mkdtemp(prefix="mailtlsd-it-")
    config.mailtlsd_offset = random.randrange(NBLOCKS)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks())


class XdistHooks:
    @staticmethod
    def pytest_configure_node(node):
        """Controller side: hand the run's state to a worker."""
        node.workerinput["mailtlsd_session"] = node.config.mailtlsd_session
        node.workerinput["mailtlsd_offset"] = node.config.mailtlsd_offset


def pytest_sessionstart(session):
    """Before any test (and worker) starts, outside every test's timeout:
    the daemon is there, and the PKI is made."""
    config = session.config
    if hasattr(config, "workerinput") or config.option.collectonly:
        return
    binary = daemon_binary()
    if not os.access(binary, os.X_OK):
        raise pytest.UsageError("no executable daemon at %s (set MAILTLSD)"
                                % binary)
    session_dir = config.mailtlsd_session
    generate(os.path.join(session_dir, "certs")).save(
        os.path.join(session_dir, "certs.json"))


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput") and \
            hasattr(config, "mailtlsd_session"):
        shutil.rmtree(config.mailtlsd_session, ignore_errors=True)


@pytest.fixture(scope="session")
def certs(pytestconfig):
    """The run's PKI (made by pytest_sessionstart)."""
    return Certs.load(os.path.join(pytestconfig.mailtlsd_session,
                                   "certs.json"))


# ----------------------------------------------------------- collection

def pytest_generate_tests(metafunc):
    """@case(params={label: kwargs}): one test per label, id = label."""
    c = getattr(metafunc.function, "case", None)
    if c is None or not c.params:
        return
    sig = inspect.signature(metafunc.function).parameters
    names = [n for n in sig if any(n in kw for kw in c.params.values())]
    values = [pytest.param(*[kw.get(n, sig[n].default) for n in names],
                           id=label)
              for label, kw in c.params.items()]
    metafunc.parametrize(names, values)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Marks from @case (before -m selects on them), port indexes, and the
    heavy tests last."""
    for index, item in enumerate(items):
        item.mailtlsd_index = index
        c = getattr(getattr(item, "function", None), "case", None)
        if c is None:
            continue
        item.add_marker(pytest.mark.timeout(c.timeout))
        if c.heavy:
            item.add_marker(pytest.mark.heavy)
        if c.valgrind:
            item.add_marker(pytest.mark.valgrind)
    items.sort(key=lambda item: item.get_closest_marker("heavy") is not None)


# ------------------------------------------------------------- running

@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """Heavy tests run alone: an exclusive lock against every other test's
    shared one, taken before the test's timeout starts."""
    heavy = item.get_closest_marker("heavy") is not None
    path = os.path.join(item.config.mailtlsd_session, "heavy.lock")
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if heavy else fcntl.LOCK_SH)
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "mailtlsd_rep_" + rep.when, rep)
    # A harness.Skip (a unittest.SkipTest) is reported where pytest turned
    # it into a skip; report it at the test instead.
    if rep.skipped and isinstance(rep.longrepr, tuple) and \
            rep.longrepr[0].endswith(os.path.join("_pytest", "unittest.py")):
        path, line, _ = item.location
        rep.longrepr = (path, line + 1, rep.longrepr[2])


def case_name(item):
    """The test's name as the old runner gave it: relay.greeting[imap]."""
    module = item.module.__name__.replace("test_", "", 1)
    return "%s.%s" % (module, item.name.replace("test_", "", 1))


@pytest.fixture
def t(request, tmp_path, certs):
    """The test's Ctx; its teardown checks the daemons (see the top)."""
    item = request.node
    base = harness.PORT_LOW + harness.PORT_BLOCK * (
        (request.config.mailtlsd_offset + item.mailtlsd_index) % NBLOCKS)
    ctx = harness.Ctx(case_name(item), str(tmp_path), certs,
                      daemon_binary(), base)
    yield ctx
    errors = ctx.teardown()
    rep = getattr(item, "mailtlsd_rep_call", None)
    if errors or (rep is not None and rep.failed):
        for d in ctx.daemons:
            print("---- %s log (last 40 lines) ----" % d.name)
            print(d.tail(40))
    if errors:
        pytest.fail("; ".join(errors), pytrace=False)
