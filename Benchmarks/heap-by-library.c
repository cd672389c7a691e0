// Counts live heap bytes by the shared object that called malloc: a diagnostic for scenario 4
// (memory per idle connection), used for the breakdown in RESULTS.md. Not part of any build.
//
//   gcc -O2 -shared -fPIC -o /tmp/heap-by-library.so Benchmarks/heap-by-library.c -ldl -lpthread
//   LD_PRELOAD=/tmp/heap-by-library.so .build/release/h3-bench serve --port P --cert C --key K &
//   kill -USR2 <pid>     # appends live bytes and allocation counts per library, and one
//                        # "E library size" line per live allocation, to /tmp/heap-by-library-<pid>.txt
//
// Take one dump before and one after opening N idle connections (h3-bench idle) and divide the
// difference by N. The pointer table lives beside the heap, so the process's RSS is not
// meaningful while this is loaded; the counted bytes are what was requested from malloc.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <malloc.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

#define SLOTS (1u << 22)
typedef struct { uintptr_t p; uint32_t size; uint16_t dso; } entry;
static entry *table;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
#define MAXDSO 256
static uintptr_t dsobase[MAXDSO];
static char dsoname[MAXDSO][64];
static long long live[MAXDSO];
static long long count[MAXDSO];
static int ndso;
static __thread int busy;

static int dso_of(void *ret) {
    Dl_info info;
    if (!dladdr(ret, &info) || !info.dli_fbase) return 0;
    uintptr_t base = (uintptr_t)info.dli_fbase;
    for (int i = 1; i < ndso; i++) if (dsobase[i] == base) return i;
    if (ndso >= MAXDSO) return 0;
    if (ndso == 0) { ndso = 1; strcpy(dsoname[0], "?"); }
    int i = ndso++;
    dsobase[i] = base;
    const char *n = strrchr(info.dli_fname, '/');
    snprintf(dsoname[i], 64, "%s", n ? n + 1 : info.dli_fname);
    return i;
}
static void record(void *p, size_t size, void *ret) {
    if (!p || busy) return;
    busy = 1;
    pthread_mutex_lock(&lock);
    if (!table) table = __libc_calloc(SLOTS, sizeof(entry));
    int d = dso_of(ret);
    uintptr_t h = ((uintptr_t)p >> 4) & (SLOTS - 1);
    for (unsigned k = 0; k < SLOTS; k++, h = (h + 1) & (SLOTS - 1)) {
        if (table[h].p == 0 || table[h].p == 1) { table[h].p = (uintptr_t)p; table[h].size = size; table[h].dso = d; break; }
    }
    live[d] += size; count[d]++;
    pthread_mutex_unlock(&lock);
    busy = 0;
}
static void forget(void *p) {
    if (!p || !table) return;
    pthread_mutex_lock(&lock);
    uintptr_t h = ((uintptr_t)p >> 4) & (SLOTS - 1);
    for (unsigned k = 0; k < SLOTS; k++, h = (h + 1) & (SLOTS - 1)) {
        if (table[h].p == 0) break;
        if (table[h].p == (uintptr_t)p) { live[table[h].dso] -= table[h].size; count[table[h].dso]--; table[h].p = 1; break; }
    }
    pthread_mutex_unlock(&lock);
}
void *malloc(size_t n) { void *p = __libc_malloc(n); record(p, n, __builtin_return_address(0)); return p; }
void *calloc(size_t a, size_t b) { void *p = __libc_calloc(a, b); record(p, a * b, __builtin_return_address(0)); return p; }
void *realloc(void *o, size_t n) { forget(o); void *p = __libc_realloc(o, n); record(p, n, __builtin_return_address(0)); return p; }
void free(void *p) { forget(p); __libc_free(p); }
int posix_memalign(void **out, size_t al, size_t n) { void *p = __libc_memalign(al, n); if (!p) return 12; *out = p; record(p, n, __builtin_return_address(0)); return 0; }
void *aligned_alloc(size_t al, size_t n) { void *p = __libc_memalign(al, n); record(p, n, __builtin_return_address(0)); return p; }
void *memalign(size_t al, size_t n) { void *p = __libc_memalign(al, n); record(p, n, __builtin_return_address(0)); return p; }

static void dump(int sig) {
    (void)sig; busy = 1;
    char path[64]; snprintf(path, sizeof path, "/tmp/heap-by-library-%d.txt", getpid());
    FILE *f = fopen(path, "a");
    if (!f) return;
    pthread_mutex_lock(&lock);
    fprintf(f, "---\n");
    for (int i = 0; i < ndso; i++) fprintf(f, "%s %lld %lld\n", dsoname[i], live[i], count[i]);
    for (unsigned h = 0; table && h < SLOTS; h++)
        if (table[h].p > 1) fprintf(f, "E %s %u\n", dsoname[table[h].dso], table[h].size);
    pthread_mutex_unlock(&lock);
    fclose(f);
    busy = 0;
}
__attribute__((constructor)) static void init(void) { signal(SIGUSR2, dump); }
