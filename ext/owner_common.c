/*
 * owner_common.c -- the listener list shared by every owner_*.c.
 */
#include "xbind.h"

#include <stdlib.h>
#include <string.h>

void xb_listeners_free(xb_listeners *list)
{
    if (list == NULL)
        return;
    free(list->items);
    list->items = NULL;
    list->count = 0;
    list->cap = 0;
}

xb_listener *xb_listeners_add(xb_listeners *list)
{
    xb_listener *item;

    if (list == NULL)
        return NULL;
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 8;
        xb_listener *items;
        if (cap < list->cap || cap > ((size_t)-1) / sizeof(xb_listener))
            return NULL;
        items = (xb_listener *)realloc(list->items, cap * sizeof(xb_listener));
        if (items == NULL)
            return NULL;
        list->items = items;
        list->cap = cap;
    }
    item = &list->items[list->count++];
    memset(item, 0, sizeof(*item));
    item->uid = -1;
    item->v6only = -1;
    return item;
}
