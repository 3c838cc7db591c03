/*
 * main() for the engine-less builds (`make fuzz-replay`): runs every file
 * named on the command line, or every file in a named directory, through
 * LLVMFuzzerTestOneInput once, like a libFuzzer binary given files.
 * Built with any compiler (gcc + ASan/UBSan by default).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long files;
static unsigned long long bytes;

static int run_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, n = 0, k;
    uint8_t *buf = malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n, fp)) > 0) {
        n += k;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
    }
    fclose(fp);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", path);
        return -1;
    }
    /* an exact-size copy so ASan sees reads past the end of the input */
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    files++;
    bytes += n;
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return run_file(path);
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return -1;
    }
    char **names = NULL;
    size_t nn = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (nn == cap) {
            char **nv = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof(*nv));
            if (!nv) {
                rc = -1;
                break;
            }
            names = nv;
        }
        size_t l = strlen(path) + strlen(e->d_name) + 2;
        if (!(names[nn] = malloc(l))) {
            rc = -1;
            break;
        }
        snprintf(names[nn++], l, "%s/%s", path, e->d_name);
    }
    closedir(d);
    if (nn)
        qsort(names, nn, sizeof(*names), cmp);
    for (size_t i = 0; i < nn; i++) {
        if (rc == 0 && run_file(names[i]) != 0)
            rc = -1;
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 0;
    LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++)
        if (argv[i][0] != '-' && run_path(argv[i]) != 0)
            rc = 1;
    printf("%s: %lu inputs, %llu bytes, no finding\n", argv[0], files, bytes);
    return rc;
}
