/*
 * owner_win32_test.c -- owner_win32.c under Wine (or Windows).
 *
 * Listens on 127.0.0.1 (port from argv[1], 0: any), looks the port up and
 * prints one line per listener: "family host port pid name|user".  Exit 0
 * if our listener was found, 1 if not, 2 on a lookup error, 3 on a socket error.
 */
#include "xbind.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    xb_listeners list = {NULL, 0, 0};
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    WSADATA wsa;
    SOCKET s;
    struct sockaddr_in a;
    int alen = (int)sizeof(a), port, found = 0;
    size_t i;
    char text[256];

    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0)
        return 3;
    s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (s == INVALID_SOCKET)
        return 3;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((u_short)(argc > 1 ? atoi(argv[1]) : 0));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, (int)sizeof(a)) != 0 || listen(s, 5) != 0 ||
        getsockname(s, (struct sockaddr *)&a, &alen) != 0) {
        printf("socket error %d\n", WSAGetLastError());
        return 3;
    }
    port = ntohs(a.sin_port);
    if (xb_owner_listeners(port, 0, &list, &err) != 0) {
        printf("lookup error: %s: %s\n", err.detail, xb_strerror(err.code, text, sizeof(text)));
        return 2;
    }
    printf("self pid %lu port %d listeners %u\n", (unsigned long)GetCurrentProcessId(), port,
           (unsigned)list.count);
    for (i = 0; i < list.count; i++) {
        const xb_listener *l = &list.items[i];
        printf("%s %s %d %ld %s|%s\n", l->family == AF_INET ? "IPv4" : "IPv6", l->host, l->port,
               l->npids ? l->pids[0] : -1L, l->npids ? l->names[0] : "", l->user);
        if (l->family == AF_INET && strcmp(l->host, "127.0.0.1") == 0 && l->port == port &&
            l->uid == -1 && l->npids == 1)
            found = 1;
    }
    {
        long long uid = 0;
        char user[XB_OWNER_USERLEN];
        if (xb_owner_process_user((long)GetCurrentProcessId(), &uid, user, sizeof(user), &err) != 0)
            printf("process_user error: %s %d\n", err.detail, err.code);
        else
            printf("process_user uid %lld user %s\n", uid, user);
    }
    /* bad arguments are refused, and the list is left empty */
    if (xb_owner_listeners(0, 0, &list, &err) != -1 || list.count != 0 || err.stage != XB_STAGE_OWNER)
        found = 0;
    xb_listeners_free(&list);
    closesocket(s);
    WSACleanup();
    return found ? 0 : 1;
}
