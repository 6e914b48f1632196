/*
 * module.c -- twisted_patch._native, the CPython binding of the C core.
 *
 * Thin on purpose: parse arguments, call xbind.h, turn an xb_error into a
 * Python exception.  Built against the limited API (abi3) so that one wheel
 * serves every supported CPython.
 *
 * Errors:
 *   - a bad address or port (XB_STAGE_ADDRESS) raises ValueError;
 *   - any OS failure raises twisted_patch._native.BindError, an OSError
 *     subclass whose errno/strerror are the OS's and which carries
 *     .stage ("socket", "option", "bind", "listen", ...), .detail (the call
 *     or option) and .address ("127.0.0.1:3456" or None).
 *
 * BindError lives in the module's state (multi-phase init, PEP 489), as
 * CPython's own socket module keeps its exception types: every function
 * reaches it through its module object `self`.  The state exists before
 * anything can fail, so even a failure of the platform's setup (WSAStartup)
 * raises BindError.
 */
#ifndef Py_LIMITED_API
#  define Py_LIMITED_API 0x03090000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "xbind.h"

#include <limits.h>
#include <string.h>

typedef struct native_state {
    PyObject *bind_error; /* twisted_patch._native.BindError (strong reference) */
} native_state;

static native_state *get_state(PyObject *module)
{
    return (native_state *)PyModule_GetState(module);
}

/* --- socket handles ---------------------------------------------------- */

static PyObject *sock_to_py(xb_sock s)
{
#ifdef _WIN32
    return PyLong_FromUnsignedLongLong((unsigned long long)s);
#else
    return PyLong_FromLong((long)s);
#endif
}

static int sock_converter(PyObject *obj, void *out)
{
#ifdef _WIN32
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return 0;
        /* negative or too large: a bad argument, said as for POSIX descriptors */
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "invalid socket handle %R", obj);
        return 0;
    }
    if ((xb_sock)v == XB_BADSOCK) {
        PyErr_SetString(PyExc_ValueError, "invalid socket handle");
        return 0;
    }
    *(xb_sock *)out = (xb_sock)v;
#else
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred())
        return 0;
    if (v < 0 || v > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "invalid file descriptor %ld", v);
        return 0;
    }
    *(xb_sock *)out = (xb_sock)v;
#endif
    return 1;
}

/* --- errors ------------------------------------------------------------ */

/* Raise err as ValueError (a bad address) or as the module's BindError; returns NULL. */
static PyObject *raise_error(PyObject *module, const xb_error *err, const xb_addr *addr)
{
    char text[256];
    char where[XB_ADDRSTRLEN];
    PyObject *exc = NULL, *args = NULL, *value = NULL;
    native_state *st;

    if (err->stage == XB_STAGE_ADDRESS) {
        PyErr_SetString(PyExc_ValueError, err->detail ? err->detail : "invalid address");
        return NULL;
    }
    st = get_state(module);
    if (st == NULL)
        return NULL;
    if (st->bind_error == NULL) {
        PyErr_SetString(PyExc_SystemError, "twisted_patch._native: BindError is not set up");
        return NULL;
    }
    xb_strerror(err->code, text, sizeof(text));
    args = Py_BuildValue("(is)", err->code, text);
    if (args == NULL)
        return NULL;
    exc = PyObject_CallObject(st->bind_error, args);
    Py_DECREF(args);
    if (exc == NULL)
        return NULL;

    value = PyUnicode_FromString(xb_stage_name(err->stage));
    if (value == NULL || PyObject_SetAttrString(exc, "stage", value) != 0)
        goto error;
    Py_DECREF(value);
    value = PyUnicode_FromString(err->detail ? err->detail : xb_stage_name(err->stage));
    if (value == NULL || PyObject_SetAttrString(exc, "detail", value) != 0)
        goto error;
    Py_DECREF(value);
    if (addr != NULL && xb_addr_format(addr, where, sizeof(where)) == 0) {
        value = PyUnicode_FromString(where);
        if (value == NULL)
            goto error;
    } else {
        value = Py_None;
        Py_INCREF(value);
    }
    if (PyObject_SetAttrString(exc, "address", value) != 0)
        goto error;
    Py_DECREF(value);

    PyErr_SetObject(st->bind_error, exc);
    Py_DECREF(exc);
    return NULL;

error:
    Py_XDECREF(value);
    Py_DECREF(exc);
    return NULL;
}

/* Parse (host, port, family) from Python values into an xb_addr. */
static int parse_addr(PyObject *module, PyObject *host, long port, int family, xb_addr *out)
{
    PyObject *bytes = NULL;
    const char *text = NULL;
    int rc;
    xb_error err = {XB_STAGE_NONE, 0, NULL};

    if (host != Py_None) {
        if (!PyUnicode_Check(host)) {
            PyErr_SetString(PyExc_TypeError, "host must be a str or None");
            return -1;
        }
        bytes = PyUnicode_AsUTF8String(host);
        if (bytes == NULL)
            return -1;
        /* With a NULL length, embedded NUL characters raise ValueError. */
        if (PyBytes_AsStringAndSize(bytes, (char **)&text, NULL) != 0) {
            Py_DECREF(bytes);
            return -1;
        }
    }
    rc = xb_addr_parse(text, port, family, out, &err);
    Py_XDECREF(bytes);
    if (rc != 0) {
        raise_error(module, &err, NULL);
        return -1;
    }
    return 0;
}

static PyObject *addr_to_tuple(const xb_addr *addr)
{
    char buf[XB_ADDRSTRLEN];
    char *host = buf;
    size_t n;

    if (xb_addr_format(addr, buf, sizeof(buf)) != 0) {
        PyErr_SetString(PyExc_ValueError, "cannot format address");
        return NULL;
    }
    /* Strip ":port" and the IPv6 brackets: (family, host, port). */
    n = strlen(buf);
    while (n > 0 && buf[n - 1] != ':')
        n--;
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "cannot format address");
        return NULL;
    }
    buf[n - 1] = '\0';
    if (buf[0] == '[') {
        host = buf + 1;
        if (n >= 2 && buf[n - 2] == ']')
            /* host points into buf: this write ends the host text (cppcheck misses the alias) */
            // cppcheck-suppress unreadVariable
            buf[n - 2] = '\0';
    }
    return Py_BuildValue("(isi)", xb_addr_family(addr), host, xb_addr_port(addr));
}

/* --- functions --------------------------------------------------------- */

PyDoc_STRVAR(parse_address_doc,
"parse_address(host, port, family=0) -> (family, host, port)\n\n"
"Validate a numeric IP address and port without any name lookup and return\n"
"the normalised form.  host None or '' is the wildcard of family (IPv4 for 0).\n"
"Raises ValueError naming what is wrong.");

static PyObject *py_parse_address(PyObject *self, PyObject *args)
{
    PyObject *host;
    long port;
    int family = AF_UNSPEC;
    xb_addr addr;

    if (!PyArg_ParseTuple(args, "Ol|i:parse_address", &host, &port, &family))
        return NULL;
    if (parse_addr(self, host, port, family, &addr) != 0)
        return NULL;
    return addr_to_tuple(&addr);
}

PyDoc_STRVAR(open_socket_doc,
"open_socket(family) -> handle\n\n"
"A hardened, unbound TCP socket: non-inheritable and non-blocking from\n"
"creation, IPV6_V6ONLY on IPv6, SO_EXCLUSIVEADDRUSE (Windows) or SO_REUSEADDR\n"
"without SO_REUSEPORT (POSIX).  The caller owns the handle.");

static PyObject *py_open_socket(PyObject *self, PyObject *args)
{
    int family;
    xb_sock s;
    xb_error err = {XB_STAGE_NONE, 0, NULL};

    if (!PyArg_ParseTuple(args, "i:open_socket", &family))
        return NULL;
    if (xb_socket_open(family, &s, &err) != 0)
        return raise_error(self, &err, NULL);
    PyObject *result = sock_to_py(s);
    if (result == NULL)
        (void)xb_close(s);
    return result;
}

PyDoc_STRVAR(bind_doc,
"bind(handle, host, port) -> None\n\n"
"Bind the socket to a numeric address of the socket's own family.");

static PyObject *py_bind(PyObject *self, PyObject *args)
{
    xb_sock s;
    PyObject *host;
    long port;
    xb_addr addr, name;
    xb_error err = {XB_STAGE_NONE, 0, NULL};

    if (!PyArg_ParseTuple(args, "O&Ol:bind", sock_converter, &s, &host, &port))
        return NULL;
    if (xb_socket_name(s, &name, &err) != 0) {
#ifdef _WIN32
        /* Windows: an unbound socket has no name (WSAEINVAL); its family is still known,
         * so a mismatched address is the same ValueError as on POSIX.  Any other failure
         * (not a socket) is getsockname's, as on POSIX. */
        int family;
        if (err.code != WSAEINVAL || xb_socket_family(s, &family, &err) != 0)
            return raise_error(self, &err, NULL);
        name.ss.ss_family = (ADDRESS_FAMILY)family; // NOLINT(bugprone-narrowing-conversions)
#else
        return raise_error(self, &err, NULL);
#endif
    }
    if (parse_addr(self, host, port, name.ss.ss_family, &addr) != 0)
        return NULL;
    if (xb_socket_bind(s, &addr, &err) != 0)
        return raise_error(self, &err, &addr);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(listen_doc,
"listen(handle, backlog) -> None\n\n"
"listen() on a bound socket.");

static PyObject *py_listen(PyObject *self, PyObject *args)
{
    xb_sock s;
    int backlog;
    xb_addr name;
    xb_error err = {XB_STAGE_NONE, 0, NULL};

    if (!PyArg_ParseTuple(args, "O&i:listen", sock_converter, &s, &backlog))
        return NULL;
    if (backlog < 0) {
        PyErr_Format(PyExc_ValueError, "backlog must be 0 or more, not %d", backlog);
        return NULL;
    }
    if (xb_socket_listen(s, backlog, &err) != 0) {
        xb_error ignored;
        return raise_error(self, &err, xb_socket_name(s, &name, &ignored) == 0 ? &name : NULL);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(unlisten_doc,
"unlisten(handle) -> None\n\n"
"Stop a listening socket listening, keeping its bind (it becomes a guard):\n"
"SO_REUSEADDR cleared, shutdown(SHUT_RD), SO_ACCEPTCONN checked.  Raises\n"
"BindError (stage 'listen' or 'option') where the OS cannot: the socket then\n"
"still listens, still bound.");

static PyObject *py_unlisten(PyObject *self, PyObject *args)
{
    xb_sock s;
    xb_addr name;
    xb_error err = {XB_STAGE_NONE, 0, NULL};

    if (!PyArg_ParseTuple(args, "O&:unlisten", sock_converter, &s))
        return NULL;
    if (xb_socket_unlisten(s, &err) != 0) {
        xb_error ignored;
        return raise_error(self, &err, xb_socket_name(s, &name, &ignored) == 0 ? &name : NULL);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(listen_tcp_doc,
"listen_tcp(host, port, backlog, family=0, strict=False) -> handle\n\n"
"Open, harden, bind and listen in one call.  On failure nothing is left open\n"
"and BindError says which stage failed.  strict (POSIX): bind without\n"
"SO_REUSEADDR (set once listening), so that the bind fails beside any socket\n"
"bound on an overlapping address, TIME_WAIT entries included.");

static PyObject *py_listen_tcp(PyObject *self, PyObject *args)
{
    PyObject *host;
    long port;
    int backlog;
    int family = AF_UNSPEC;
    int strict = 0;
    xb_addr addr;
    xb_sock s;
    xb_error err = {XB_STAGE_NONE, 0, NULL};

    if (!PyArg_ParseTuple(args, "Oli|ip:listen_tcp", &host, &port, &backlog, &family, &strict))
        return NULL;
    if (backlog < 0) {
        PyErr_Format(PyExc_ValueError, "backlog must be 0 or more, not %d", backlog);
        return NULL;
    }
    if (parse_addr(self, host, port, family, &addr) != 0)
        return NULL;
    if (xb_listen_ex(&addr, backlog, strict ? XB_LISTEN_STRICT_BIND : 0u, &s, &err) != 0)
        return raise_error(self, &err, &addr);
    PyObject *result = sock_to_py(s);
    if (result == NULL)
        (void)xb_close(s);
    return result;
}

PyDoc_STRVAR(close_doc, "close(handle) -> None\n\nClose a socket handle.");

static PyObject *py_close(PyObject *self, PyObject *args)
{
    xb_sock s;

    if (!PyArg_ParseTuple(args, "O&:close", sock_converter, &s))
        return NULL;
    if (xb_close(s) != 0) {
        xb_error err = {XB_STAGE_SOCKET, xb_last_error(), "close"};
        return raise_error(self, &err, NULL);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(socket_options_doc,
"socket_options(handle) -> dict\n\n"
"The protective options as read back from the OS: reuseaddr, reuseport,\n"
"exclusiveaddruse, v6only, inheritable, nonblocking, listening (each 0/1,\n"
"or -1 where the OS has no such thing).");

static PyObject *py_socket_options(PyObject *self, PyObject *args)
{
    xb_sock s;
    xb_sockopts o;
    xb_error err = {XB_STAGE_NONE, 0, NULL};

    if (!PyArg_ParseTuple(args, "O&:socket_options", sock_converter, &s))
        return NULL;
    if (xb_socket_options(s, &o, &err) != 0)
        return raise_error(self, &err, NULL);
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:i}",
                         "reuseaddr", o.reuseaddr, "reuseport", o.reuseport,
                         "exclusiveaddruse", o.exclusiveaddruse, "v6only", o.v6only,
                         "inheritable", o.inheritable, "nonblocking", o.nonblocking,
                         "listening", o.listening);
}

PyDoc_STRVAR(strerror_doc, "strerror(code) -> str\n\nThe OS's text for an error code.");

static PyObject *py_strerror(PyObject *self, PyObject *args)
{
    int code;
    char text[256];

    (void)self;
    if (!PyArg_ParseTuple(args, "i:strerror", &code))
        return NULL;
    return PyUnicode_FromString(xb_strerror(code, text, sizeof(text)));
}

/* --- owner lookup ------------------------------------------------------ */

/* Steal `item` into tuple slot i; on a NULL item the tuple is released. */
static int tuple_put(PyObject *tuple, Py_ssize_t i, PyObject *item)
{
    if (item == NULL)
        return -1;
    return PyTuple_SetItem(tuple, i, item); /* steals item, even on failure */
}

static PyObject *none_or_text(const char *text)
{
    if (text[0] == '\0')
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(text, (Py_ssize_t)strlen(text), "replace");
}

static PyObject *listener_to_tuple(const xb_listener *l)
{
    PyObject *t, *pids, *names;
    int k;

    t = PyTuple_New(10);
    if (t == NULL)
        return NULL;
    pids = PyTuple_New(l->npids);
    names = PyTuple_New(l->npids);
    if (pids == NULL || names == NULL) {
        Py_XDECREF(pids);
        Py_XDECREF(names);
        Py_DECREF(t);
        return NULL;
    }
    for (k = 0; k < l->npids; k++) {
        if (tuple_put(pids, k, PyLong_FromLong(l->pids[k])) != 0 ||
            tuple_put(names, k, none_or_text(l->names[k])) != 0) {
            Py_DECREF(pids);
            Py_DECREF(names);
            Py_DECREF(t);
            return NULL;
        }
    }
    if (tuple_put(t, 0, PyLong_FromLong(l->family)) != 0 ||
        tuple_put(t, 1, PyUnicode_FromString(l->host)) != 0 ||
        tuple_put(t, 2, PyLong_FromLong(l->port)) != 0) {
        Py_DECREF(pids);
        Py_DECREF(names);
        Py_DECREF(t);
        return NULL;
    }
    if (l->uid < 0) {
        Py_INCREF(Py_None);
        if (tuple_put(t, 3, Py_None) != 0)
            goto error;
    } else if (tuple_put(t, 3, PyLong_FromLongLong(l->uid)) != 0) {
        goto error;
    }
    if (tuple_put(t, 4, none_or_text(l->user)) != 0)
        goto error;
    if (l->inode == 0) {
        Py_INCREF(Py_None);
        if (tuple_put(t, 5, Py_None) != 0)
            goto error;
    } else if (tuple_put(t, 5, PyLong_FromUnsignedLongLong(l->inode)) != 0) {
        goto error;
    }
    if (l->v6only < 0) {
        Py_INCREF(Py_None);
        if (tuple_put(t, 6, Py_None) != 0)
            goto error;
    } else if (tuple_put(t, 6, PyBool_FromLong(l->v6only)) != 0) {
        goto error;
    }
    if (tuple_put(t, 7, pids) != 0) {
        pids = NULL;
        goto error;
    }
    pids = NULL;
    if (tuple_put(t, 8, names) != 0) {
        names = NULL;
        goto error;
    }
    names = NULL;
    if (tuple_put(t, 9, PyBool_FromLong(l->pids_truncated)) != 0)
        goto error;
    return t;

error:
    Py_XDECREF(pids);
    Py_XDECREF(names);
    Py_DECREF(t);
    return NULL;
}

PyDoc_STRVAR(listeners_doc,
"listeners(port, self_only=False, processes=True, all_processes=False)\n"
"    -> list of (family, host, port, uid, user, inode, v6only, pids, names, pids_truncated)\n\n"
"Every TCP listener on port (1-65535), both families, wildcard and specific\n"
"addresses.  uid, user, inode and v6only are None where unknown; pids and\n"
"names are tuples (names[i] None where unknown).  self_only: on Linux, look\n"
"for holding processes only in this process (no walk of /proc).  processes=False:\n"
"on Linux, no search for holding processes at all (inodes only).  all_processes: on\n"
"Linux, walk every process we may inspect, not only those of the listeners' uids and\n"
"our own (finds a socket handed to a process of a third uid).  Raises BindError with\n"
"stage 'owner' when the lookup fails or is not supported on this OS.");

typedef int (*owner_lookup_fn)(int, unsigned, xb_listeners *, xb_error *);

static PyObject *owner_list(PyObject *self, PyObject *args, PyObject *kwargs, const char *format,
                            owner_lookup_fn lookup)
{
    static char *keywords[] = {"port", "self_only", "processes", "all_processes", NULL};
    long port;
    int self_only = 0;
    int processes = 1;
    int all_processes = 0;
    unsigned flags;
    xb_listeners list = {NULL, 0, 0};
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    PyObject *result;
    size_t i;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, format, keywords, &port, &self_only,
                                     &processes, &all_processes))
        return NULL;
    if (port < 1 || port > 65535) {
        PyErr_Format(PyExc_ValueError, "port %ld is out of range: give a number from 1 to 65535",
                     port);
        return NULL;
    }
    flags = (self_only ? XB_OWNER_SELF_ONLY : 0u) | (processes ? 0u : XB_OWNER_NO_PROCESSES) |
            (all_processes ? XB_OWNER_ALL_PROCESSES : 0u);
    Py_BEGIN_ALLOW_THREADS
    rc = lookup((int)port, flags, &list, &err);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return raise_error(self, &err, NULL);
    result = PyList_New(0);
    for (i = 0; result != NULL && i < list.count; i++) {
        PyObject *item = listener_to_tuple(&list.items[i]);
        if (item == NULL || PyList_Append(result, item) != 0) {
            Py_XDECREF(item);
            Py_CLEAR(result);
            break;
        }
        Py_DECREF(item);
    }
    xb_listeners_free(&list);
    return result;
}

static PyObject *py_listeners(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return owner_list(self, args, kwargs, "l|ppp:listeners", xb_owner_listeners);
}

PyDoc_STRVAR(bound_doc,
"bound(port, self_only=False, processes=True, all_processes=False)\n"
"    -> list of tuples as listeners()\n\n"
"Every TCP socket on port that is bound but neither listening nor connected\n"
"(a placeholder that can listen as soon as the address is free), both families.\n"
"Linux 6.6+ (sock_diag TCP_BOUND_INACTIVE); an older kernel reports none\n"
"(see BOUND_VISIBLE).  Raises BindError with stage 'owner' on failure, errno\n"
"ENOSYS (Windows: ERROR_NOT_SUPPORTED) where the OS cannot list them.");

static PyObject *py_bound(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return owner_list(self, args, kwargs, "l|ppp:bound", xb_owner_bound);
}

PyDoc_STRVAR(timewait_doc,
"timewait(port) -> int\n\n"
"How many TIME_WAIT entries have local port `port` (both families).  Linux;\n"
"BindError (stage 'owner', ENOSYS) elsewhere.");

static PyObject *py_timewait(PyObject *self, PyObject *args)
{
    long port;
    size_t count = 0;
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    int rc;

    if (!PyArg_ParseTuple(args, "l:timewait", &port))
        return NULL;
    if (port < 1 || port > 65535) {
        PyErr_Format(PyExc_ValueError, "port %ld is out of range: give a number from 1 to 65535",
                     port);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = xb_owner_timewait((int)port, &count, &err);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return raise_error(self, &err, NULL);
    return PyLong_FromSize_t(count);
}

PyDoc_STRVAR(process_start_time_doc,
"process_start_time(pid) -> float\n\n"
"When the process started, in seconds since the epoch, computed as psutil's\n"
"Process.create_time() (the value Tahoe-LAFS writes to running.process).\n"
"Raises BindError with stage 'owner' if there is no such process or the OS\n"
"refuses to say.");

static PyObject *py_process_start_time(PyObject *self, PyObject *args)
{
    long pid;
    double started = 0.0;
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    int rc;

    if (!PyArg_ParseTuple(args, "l:process_start_time", &pid))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = xb_process_start_time(pid, &started, &err);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return raise_error(self, &err, NULL);
    return PyFloat_FromDouble(started);
}

PyDoc_STRVAR(process_user_doc,
"process_user(pid) -> (uid, user)\n\n"
"The uid (None on Windows) and user name (None if unknown) of a process.\n"
"Raises BindError with stage 'owner' if there is no such process or the OS\n"
"refuses to say.");

static PyObject *py_process_user(PyObject *self, PyObject *args)
{
    long pid;
    long long uid = -1;
    char user[XB_OWNER_USERLEN];
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    PyObject *uid_obj, *user_obj, *result;
    int rc;

    if (!PyArg_ParseTuple(args, "l:process_user", &pid))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = xb_owner_process_user(pid, &uid, user, sizeof(user), &err);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return raise_error(self, &err, NULL);
    if (uid < 0) {
        uid_obj = Py_None;
        Py_INCREF(uid_obj);
    } else {
        uid_obj = PyLong_FromLongLong(uid);
        if (uid_obj == NULL)
            return NULL;
    }
    user_obj = none_or_text(user);
    if (user_obj == NULL) {
        Py_DECREF(uid_obj);
        return NULL;
    }
    result = PyTuple_Pack(2, uid_obj, user_obj);
    Py_DECREF(uid_obj);
    Py_DECREF(user_obj);
    return result;
}

PyDoc_STRVAR(guard_open_doc,
"guard_open(host, port, family=0) -> handle\n\n"
"A bound, non-listening guard socket on a numeric address: non-inheritable,\n"
"non-blocking, IPV6_V6ONLY on IPv6, never SO_REUSEADDR/SO_REUSEPORT\n"
"(Windows: SO_EXCLUSIVEADDRUSE).  Nobody can bind the address while it is\n"
"open and connections to it are refused.  The caller owns the handle.");

static PyObject *py_guard_open(PyObject *self, PyObject *args)
{
    PyObject *host;
    long port;
    int family = AF_UNSPEC;
    xb_addr addr;
    xb_sock s;
    xb_error err = {XB_STAGE_NONE, 0, NULL};

    if (!PyArg_ParseTuple(args, "Ol|i:guard_open", &host, &port, &family))
        return NULL;
    if (parse_addr(self, host, port, family, &addr) != 0)
        return NULL;
    if (xb_guard_open(&addr, &s, &err) != 0)
        return raise_error(self, &err, &addr);
    PyObject *result = sock_to_py(s);
    if (result == NULL)
        (void)xb_close(s);
    return result;
}

PyDoc_STRVAR(probe_doc,
"probe(handle) -> list of (target, options, outcome, code, detail, address, unavoidable)\n\n"
"The self-probe: try, on fresh sockets of this process, the binds a same-user\n"
"attacker would try against the bound socket `handle` (our address read with\n"
"getsockname).  target: 'same', 'specific', 'wildcard', 'sibling',\n"
"'sibling-other', 'dualstack'; options: 'SO_REUSEADDR+SO_REUSEPORT' or\n"
"'none'; outcome: 'refused', 'bound' (the attack works), 'unavailable',\n"
"'error'; code: the OS error (0 if bound); detail: the failing call;\n"
"address: '127.0.0.1:80' / '[::1]:80'; unavoidable: True if this OS allows\n"
"that bind whatever the server does.  Every probe socket is closed before\n"
"return; none ever listens.");

static PyObject *py_probe(PyObject *self, PyObject *args)
{
    xb_sock s;
    xb_probe_result results[XB_PROBE_MAX];
    size_t count = 0, i;
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    PyObject *list;

    if (!PyArg_ParseTuple(args, "O&:probe", sock_converter, &s))
        return NULL;
    if (xb_probe(s, results, XB_PROBE_MAX, &count, &err) != 0)
        return raise_error(self, &err, NULL);
    list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (i = 0; i < count; i++) {
        char where[XB_ADDRSTRLEN];
        char options[96];
        PyObject *item;
        if (xb_addr_format(&results[i].addr, where, sizeof(where)) != 0)
            where[0] = '\0';
        item = Py_BuildValue("(sssissO)", xb_probe_target_name(results[i].target),
                             xb_probe_options_text(results[i].options, options, sizeof(options)),
                             xb_probe_outcome_name(results[i].outcome), results[i].code,
                             results[i].detail ? results[i].detail : "bind", where,
                             results[i].unavoidable ? Py_True : Py_False);
        if (item == NULL || PyList_Append(list, item) != 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(item);
    }
    return list;
}

/* --- verified connections ------------------------------------------------ */

PyDoc_STRVAR(connection_doc,
"connection(client_host, client_port, server_host, server_port, pid=0, processes=True)\n"
"    -> (state, os_state, server)\n\n"
"The server end of the TCP connection from client_host:client_port (a client\n"
"socket's getsockname()) to server_host:server_port (its getpeername()): state is\n"
"'none' (no socket has that 4-tuple), 'established', 'syn-received' or 'closing';\n"
"os_state the OS's own number (None if none); server None for 'none', else a tuple\n"
"as listeners() gives (its inode None while the server has not accepted it).\n"
"pid > 0: look for holders in that process first and stop there if it holds the\n"
"socket.  processes=False (Linux): no search for holders.  Raises ValueError for a\n"
"bad address and BindError with stage 'owner' when the lookup fails or is not\n"
"supported on this OS.");

static int connection_addr(const char *host, long port, xb_addr *out)
{
    xb_error err = {XB_STAGE_NONE, 0, NULL};

    if (port < 1 || port > 65535) {
        PyErr_Format(PyExc_ValueError, "port %ld is out of range: give a number from 1 to 65535",
                     port);
        return -1;
    }
    if (xb_addr_parse(host, port, AF_UNSPEC, out, &err) != 0) {
        PyErr_Format(PyExc_ValueError, "%s: %s", err.detail ? err.detail : "invalid address",
                     host);
        return -1;
    }
    return 0;
}

static PyObject *py_connection(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"client_host", "client_port", "server_host", "server_port",
                               "pid", "processes", NULL};
    const char *chost, *shost;
    long cport, sport, pid = 0;
    int processes = 1, rc;
    xb_addr client, server;
    xb_connection conn;
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    PyObject *item, *result;
    static const char *const names[] = {"none", "established", "syn-received", "closing"};

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "slsl|lp:connection", keywords, &chost,
                                     &cport, &shost, &sport, &pid, &processes))
        return NULL;
    if (pid < 0) {
        PyErr_Format(PyExc_ValueError, "pid must be 0 (none) or a process id, not %ld", pid);
        return NULL;
    }
    if (connection_addr(chost, cport, &client) != 0 || connection_addr(shost, sport, &server) != 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = xb_owner_connection(&client, &server, pid, processes ? 0u : XB_OWNER_NO_PROCESSES,
                             &conn, &err);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return raise_error(self, &err, NULL);
    if (conn.state < XB_CONN_NONE || conn.state > XB_CONN_CLOSING) {
        PyErr_Format(PyExc_SystemError, "connection: unknown state %d", conn.state);
        return NULL;
    }
    if (conn.state == XB_CONN_NONE) {
        item = Py_None;
        Py_INCREF(item);
    } else {
        item = listener_to_tuple(&conn.server);
        if (item == NULL)
            return NULL;
    }
    if (conn.os_state < 0)
        result = Py_BuildValue("(sOO)", names[conn.state], Py_None, item);
    else
        result = Py_BuildValue("(siO)", names[conn.state], conn.os_state, item);
    Py_DECREF(item);
    return result;
}

static PyMethodDef native_methods[] = {
    {"parse_address", py_parse_address, METH_VARARGS, parse_address_doc},
    {"open_socket", py_open_socket, METH_VARARGS, open_socket_doc},
    {"bind", py_bind, METH_VARARGS, bind_doc},
    {"listen", py_listen, METH_VARARGS, listen_doc},
    {"unlisten", py_unlisten, METH_VARARGS, unlisten_doc},
    {"listen_tcp", py_listen_tcp, METH_VARARGS, listen_tcp_doc},
    {"close", py_close, METH_VARARGS, close_doc},
    {"socket_options", py_socket_options, METH_VARARGS, socket_options_doc},
    {"strerror", py_strerror, METH_VARARGS, strerror_doc},
    {"listeners", (PyCFunction)(void (*)(void))py_listeners, METH_VARARGS | METH_KEYWORDS,
     listeners_doc},
    {"process_user", py_process_user, METH_VARARGS, process_user_doc},
    {"bound", (PyCFunction)(void (*)(void))py_bound, METH_VARARGS | METH_KEYWORDS, bound_doc},
    {"timewait", py_timewait, METH_VARARGS, timewait_doc},
    {"process_start_time", py_process_start_time, METH_VARARGS, process_start_time_doc},
    {"guard_open", py_guard_open, METH_VARARGS, guard_open_doc},
    {"probe", py_probe, METH_VARARGS, probe_doc},
    {"connection", (PyCFunction)(void (*)(void))py_connection, METH_VARARGS | METH_KEYWORDS,
     connection_doc},
    {NULL, NULL, 0, NULL}
};

PyDoc_STRVAR(module_doc,
"twisted_patch._native: the exclusive-bind core (C) for twisted-patch.");

PyDoc_STRVAR(bind_error_doc,
"An OS call of the exclusive-bind core failed; .stage, .detail and .address say where.");

static int native_exec(PyObject *m)
{
    native_state *st = get_state(m);
    xb_error err = {XB_STAGE_NONE, 0, NULL};

    if (st == NULL)
        return -1;
    /* BindError first: raise_error() needs it, the platform setup below included. */
    st->bind_error = PyErr_NewExceptionWithDoc("twisted_patch._native.BindError", bind_error_doc,
                                               PyExc_OSError, NULL);
    if (st->bind_error == NULL)
        return -1;
    Py_INCREF(st->bind_error);
    if (PyModule_AddObject(m, "BindError", st->bind_error) != 0) {
        Py_DECREF(st->bind_error); /* not stolen on failure; the state keeps its own */
        return -1;
    }
    if (xb_startup(&err) != 0) {
        raise_error(m, &err, NULL);
        return -1;
    }
    if (PyModule_AddStringConstant(m, "PLATFORM_CORE",
#ifdef _WIN32
                                   "win32"
#else
                                   "posix"
#endif
                                   ) != 0)
        return -1;
    if (PyModule_AddStringConstant(m, "OWNER_BACKEND", xb_owner_backend) != 0)
        return -1;
    if (PyModule_AddIntConstant(m, "BOUND_VISIBLE", xb_owner_bound_visible()) != 0)
        return -1;
    return 0;
}

static int native_traverse(PyObject *m, visitproc visit, void *arg)
{
    native_state *st = get_state(m);

    if (st != NULL)
        Py_VISIT(st->bind_error);
    return 0;
}

static int native_clear(PyObject *m)
{
    native_state *st = get_state(m);

    if (st != NULL)
        Py_CLEAR(st->bind_error);
    return 0;
}

static void native_free(void *m)
{
    (void)native_clear((PyObject *)m);
}

static PyModuleDef_Slot native_slots[] = {
    {Py_mod_exec, (void *)native_exec},
    {0, NULL}
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "twisted_patch._native", module_doc, sizeof(native_state),
    native_methods, native_slots, native_traverse, native_clear, native_free
};

PyMODINIT_FUNC PyInit__native(void)
{
    return PyModuleDef_Init(&native_module);
}
