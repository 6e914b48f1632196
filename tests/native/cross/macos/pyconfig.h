/*
 * pyconfig.h for compiling ext/module.c for macOS (x86_64 and arm64) on this
 * Linux machine: `make test-cross` (cross.mk) puts it in front of Debian's
 * CPython headers, whose own pyconfig.h only knows Linux targets.
 *
 * Not configure's output: written for this check.  It defines the macros that
 * CPython's public headers test when Py_LIMITED_API is set, with the values
 * configure gives on macOS (LP64, Darwin).  Feature-test macros follow
 * configure's choices for Darwin: _DARWIN_C_SOURCE, and no _POSIX_C_SOURCE /
 * _XOPEN_SOURCE (configure leaves those out on macOS because they hide
 * platform APIs).  Only the limited API is compiled against it; the
 * release workflow builds with the real pyconfig.h on macOS runners.
 */
#ifndef TWISTED_PATCH_CROSS_MACOS_PYCONFIG_H
#define TWISTED_PATCH_CROSS_MACOS_PYCONFIG_H

#if !defined(__APPLE__) || !defined(__LP64__)
#  error "this pyconfig.h is for 64-bit macOS targets only (zig cc -target x86_64-macos / aarch64-macos)"
#endif

/* Feature-test macros (configure: AC_USE_SYSTEM_EXTENSIONS and the Darwin case). */
#ifndef _DARWIN_C_SOURCE
#  define _DARWIN_C_SOURCE 1
#endif
#ifndef _NETBSD_SOURCE
#  define _NETBSD_SOURCE 1
#endif
#ifndef __BSD_VISIBLE
#  define __BSD_VISIBLE 1
#endif
#ifndef _ALL_SOURCE
#  define _ALL_SOURCE 1
#endif
#ifndef _GNU_SOURCE
#  define _GNU_SOURCE 1
#endif

/* Sizes (LP64: both macOS architectures). */
#define SIZEOF_DOUBLE 8
#define SIZEOF_FLOAT 4
#define SIZEOF_FPOS_T 8
#define SIZEOF_INT 4
#define SIZEOF_LONG 8
#define SIZEOF_LONG_DOUBLE 16
#define SIZEOF_LONG_LONG 8
#define SIZEOF_OFF_T 8
#define SIZEOF_PID_T 4
#define SIZEOF_PTHREAD_KEY_T 8
#define SIZEOF_PTHREAD_T 8
#define SIZEOF_SHORT 2
#define SIZEOF_SIZE_T 8
#define SIZEOF_TIME_T 8
#define SIZEOF_UINTPTR_T 8
#define SIZEOF_VOID_P 8
#define SIZEOF_WCHAR_T 4
#define SIZEOF__BOOL 1
#define ALIGNOF_LONG 8
#define ALIGNOF_SIZE_T 8

/* Both macOS architectures are little-endian IEEE 754. */
#define DOUBLE_IS_LITTLE_ENDIAN_IEEE754 1
#if defined(__x86_64__)
#  define HAVE_GCC_ASM_FOR_X87 1
#endif

/* Headers and functions the public headers test for. */
#define HAVE_BUILTIN_ATOMIC 1
#define HAVE_STD_ATOMIC 1
#define HAVE_CLOCK_GETTIME 1
#define HAVE_DECL_RTLD_NOW 1
#define HAVE_DLOPEN 1
#define HAVE_FORK 1
#define HAVE_LANGINFO_H 1
#define HAVE_PTHREAD_H 1
#define HAVE_READLINK 1
#define HAVE_REALPATH 1
#define HAVE_SSIZE_T 1
#define HAVE_SYS_SELECT_H 1
#define HAVE_SYS_STAT_H 1
#define HAVE_SYS_TIME_H 1
#define HAVE_WCHAR_H 1
#define HAVE_UNISTD_H 1
#define HAVE_STDINT_H 1
#define HAVE_INTTYPES_H 1
#define STDC_HEADERS 1

/* How python.org's and Homebrew's macOS builds are configured. */
#define WITH_DOC_STRINGS 1
#define WITH_FREELISTS 1
#define WITH_PYMALLOC 1
#define WITH_NEXT_FRAMEWORK 1
#define Py_ENABLE_SHARED 1
#define PY_SUPPORT_TIER 1

#endif
