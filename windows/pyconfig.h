/* pyconfig.h for building twisted_patch._native for 64-bit Windows with mingw-w64,
 * against the limited API (Py_LIMITED_API=0x03090000) and Debian's CPython headers.
 * windows.mk copies those headers to build/windows/include/ and puts this file in
 * place of Debian's (Linux) pyconfig.h.  Only what the limited-API headers read;
 * the values are those of CPython's own PC/pyconfig.h for x64 Windows. */
#ifndef TWISTED_PATCH_WIN_PYCONFIG_H
#define TWISTED_PATCH_WIN_PYCONFIG_H

#if !defined(_WIN64) || !defined(__MINGW64__)
#error "this pyconfig.h is for x86_64-w64-mingw32 only"
#endif

#define MS_WIN32
#define MS_WINDOWS
#define MS_WIN64
#define NT_THREADS
#define WITH_THREAD
#define Py_ENABLE_SHARED 1
#define HAVE_DECLSPEC_DLL
/* PC/pyconfig.h defines it: without it PyDoc_STRVAR gives "" (a wheel without
 * docstrings; tests/test_native_stub.py reads them). */
#define WITH_DOC_STRINGS 1

#define SIZEOF_SHORT 2
#define SIZEOF_INT 4
#define SIZEOF_LONG 4
#define SIZEOF_LONG_LONG 8
#define SIZEOF_DOUBLE 8
#define SIZEOF_FLOAT 4
#define SIZEOF_VOID_P 8
#define SIZEOF_SIZE_T 8
#define SIZEOF_TIME_T 8
#define SIZEOF_OFF_T 4
#define SIZEOF_FPOS_T 8
#define SIZEOF_WCHAR_T 2
#define SIZEOF_PID_T 8
#define SIZEOF__BOOL 1
#define ALIGNOF_SIZE_T 8
#define ALIGNOF_LONG 4

#define HAVE_WCHAR_H 1
#define HAVE_STDARG_PROTOTYPES 1
#define HAVE_SYS_STAT_H 1
#define HAVE_FCNTL_H 1
#define HAVE_ERRNO_H 1
#define HAVE_SIGNAL_H 1
#define HAVE_DYNAMIC_LOADING 1
#define HAVE_COPYSIGN 1
#define HAVE_ROUND 1
#define HAVE_HYPOT 1
#define DONT_HAVE_SIG_ALARM
#define DONT_HAVE_SIG_PAUSE
#define LONG_BIT 32
#define WORD_BIT 32

#define PY_LONG_LONG long long
#define PY_LLONG_MIN LLONG_MIN
#define PY_LLONG_MAX LLONG_MAX
#define PY_ULLONG_MAX ULLONG_MAX

#define Py_SOCKET_FD_CAN_BE_GE_FD_SETSIZE

/* Py_ssize_t as CPython's PC/pyconfig.h defines it for Win64. */
#include <limits.h>
typedef __int64 Py_ssize_t;
#define PY_SSIZE_T_MAX LLONG_MAX
#define HAVE_PY_SSIZE_T 1

#endif
