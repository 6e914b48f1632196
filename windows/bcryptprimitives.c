/* bcryptprimitives.dll for Wine 8, which lacks it: the one export Rust-built wheels
 * (cryptography, pycddl) import, ProcessPrng, over RtlGenRandom (advapi32's
 * SystemFunction036, which Wine implements).  Built by windows.mk with mingw-w64 and
 * placed beside python.exe; never part of the wheel.  Test harness only. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom */

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000u ? 0x40000000u : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
