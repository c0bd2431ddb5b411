/*
 * libFuzzer target for the configuration: the INI loader
 * (pool_config_load), pool_config_set, section matching
 * (config_resolve), config_validate, config_copy and config_dump.
 *
 * Input layout: CONFIG [ NUL A NUL B [ NUL C ] ]
 *  - CONFIG, the bytes before the first NUL, is loaded as a file;
 *  - with two fields after it, pool_config_set(cfg, NULL, A, B) follows
 *    on the loaded configuration; with three, pool_config_set(cfg, A, B, C);
 *    and the same set is also made on a fresh configuration, before CONFIG
 *    is loaded on top of it (a load into a configuration that has
 *    sections already);
 *  - an input holding a NUL is also loaded whole, and must be rejected.
 * Plain config files are thus valid inputs, and the seed corpus is made
 * of them.
 *
 * The library has no loader from memory, so the file is a memfd reached
 * through /proc/self/fd: no disk, one per process, reused.
 *
 * Besides memory errors and leaks (ASan, UBSan, LeakSanitizer), it checks
 * the contract (SPEC.md, tcpool.h) and aborts when it is broken:
 *  - a failed load or set leaves the configuration exactly as it was,
 *    and its message starts with "FILE:" (load) or is not empty (set);
 *  - a loaded file passes config_validate(), as pool_create() needs;
 *  - config_copy() dumps the same as its original;
 *  - config_dump() writes the file format: its output loads again and
 *    dumps the same (what "tcpool check-config" prints is a valid file),
 *    unless a line grew past the reader's limit (\xHH escapes are four
 *    bytes for one).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config-keys.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

struct memfile {
	int fd;
	char path[64];
};

static struct memfile input_file, dump_file;
static FILE *devnull;

/* Endpoints every configuration is resolved for, on top of its own. */
static const char *const probes[] = {
	"127.0.0.1:11211", "localhost:6379", "[::1]:80", "unix:/run/app.sock",
	"example.com:443",
};

static char *dump_of(const struct pool_config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	CHECK(fp != NULL);
	CHECK(config_dump(cfg, fp) == 0);
	CHECK(fclose(fp) == 0);
	return buf;
}

static void memfile_open(struct memfile *f, const char *name)
{
	f->fd = memfd_create(name, MFD_CLOEXEC);
	CHECK(f->fd >= 0);
	snprintf(f->path, sizeof(f->path), "/proc/self/fd/%d", f->fd);
}

static void memfile_write(struct memfile *f, const void *data, size_t size)
{
	CHECK(ftruncate(f->fd, 0) == 0);
	CHECK(pwrite(f->fd, data, size, 0) == (ssize_t)size);
}

static void setup_once(void)
{
	if (devnull)
		return;
	memfile_open(&input_file, "fuzz-config");
	memfile_open(&dump_file, "fuzz-config-dump");
	devnull = fopen("/dev/null", "w");
	CHECK(devnull != NULL);
}

/* ---- oracles ---- */

static void check_load_failed(const pool_config_t *cfg, const char *before,
                              int rc, const char *err, const char *path)
{
	size_t n = strlen(path);
	char *after = dump_of(cfg);

	CHECK(rc == POOL_ECONFIG || rc == POOL_ENOMEM || rc == POOL_ESYS);
	CHECK(strncmp(err, path, n) == 0 && err[n] == ':');
	CHECK(strcmp(before, after) == 0); /* rejected whole */
	free(after);
}

static void resolve_one(const pool_config_t *cfg, const struct endpoint_addr *a)
{
	struct pool_settings s;

	if (config_resolve(cfg, a, &s) == 0)
		CHECK(s.close_request_len == 0 || s.close_request != NULL);
	settings_release(&s);
}

static void exercise(const pool_config_t *cfg)
{
	struct endpoint_addr a;
	struct pool_config *copy;
	char *d1, *d2;
	size_t i;

	for (i = 0; i < sizeof(probes) / sizeof(probes[0]); i++)
		if (endpoint_parse(probes[i], false, &a, NULL, 0) == 0)
			resolve_one(cfg, &a);
	for (i = 0; i < cfg->nsections; i++)
		resolve_one(cfg, &cfg->sections[i].addr);
	resolve_one(cfg, NULL);
	copy = config_copy(cfg);
	CHECK(copy != NULL);
	d1 = dump_of(cfg);
	d2 = dump_of(copy);
	CHECK(strcmp(d1, d2) == 0);
	free(d1);
	free(d2);
	pool_config_free(copy);
}

/* What config_dump() wrote must load again and dump the same. */
static void check_roundtrip(const pool_config_t *cfg)
{
	char *d1 = dump_of(cfg), *d2;
	pool_config_t *again = pool_config_new();
	char err[512];
	int rc;

	CHECK(again != NULL);
	memfile_write(&dump_file, d1, strlen(d1));
	rc = pool_config_load(again, dump_file.path, err, sizeof(err));
	if (rc == 0) {
		d2 = dump_of(again);
		CHECK(strcmp(d1, d2) == 0);
		free(d2);
	} else {
		CHECK(strstr(err, ": line too long") != NULL);
	}
	pool_config_free(again);
	free(d1);
}

/* ---- the three ways in ---- */

static void fuzz_load(pool_config_t *cfg, const char *text)
{
	char *before = dump_of(cfg);
	char err[512];
	int rc;

	memfile_write(&input_file, text, strlen(text));
	memset(err, 'x', sizeof(err));
	rc = pool_config_load(cfg, input_file.path, err, sizeof(err));
	if (rc != 0) {
		check_load_failed(cfg, before, rc, err, input_file.path);
	} else {
		CHECK(err[0] == '\0');
		CHECK(config_validate(cfg, err, sizeof(err)) == 0);
		CHECK(config_dump(cfg, devnull) == 0);
		exercise(cfg);
		check_roundtrip(cfg);
	}
	free(before);
}

/* A NUL byte has no place in a config file: the whole input must fail. */
static void fuzz_load_nul(const uint8_t *data, size_t size)
{
	pool_config_t *cfg = pool_config_new();
	char err[512];

	CHECK(cfg != NULL);
	memfile_write(&input_file, data, size);
	CHECK(pool_config_load(cfg, input_file.path, err, sizeof(err)) != 0);
	pool_config_free(cfg);
}

static void fuzz_set(pool_config_t *cfg, const char *ep, const char *key,
                     const char *value)
{
	char *before = dump_of(cfg), *after;
	char err[512];
	int rc;

	rc = pool_config_set(cfg, ep, key, value, err, sizeof(err));
	if (rc != 0) {
		CHECK(rc == POOL_ECONFIG || rc == POOL_ENOMEM);
		CHECK(err[0] != '\0');
		after = dump_of(cfg);
		CHECK(strcmp(before, after) == 0);
		free(after);
	} else {
		CHECK(err[0] == '\0');
		config_validate(cfg, err, sizeof(err)); /* either verdict */
		exercise(cfg);
	}
	free(before);
}

/* The set on a fresh configuration, then the file loaded over it. */
static void fuzz_set_then_load(const char *ep, const char *key,
                               const char *value, const char *text)
{
	pool_config_t *cfg = pool_config_new();

	CHECK(cfg != NULL);
	if (pool_config_set(cfg, ep, key, value, NULL, 0) == 0)
		fuzz_load(cfg, text);
	pool_config_free(cfg);
}

/* Split the input at NUL bytes: field[0] is the file, up to three more. */
static size_t split(char *buf, size_t size, char *field[4])
{
	size_t n = 1, i;

	field[0] = buf;
	for (i = 0; i < size && n < 4; i++) {
		if (buf[i] == '\0')
			field[n++] = buf + i + 1;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf, *field[4];
	pool_config_t *cfg;
	size_t n;

	setup_once();
	buf = malloc(size + 1);
	cfg = pool_config_new();
	CHECK(buf != NULL && cfg != NULL);
	memcpy(buf, data, size);
	buf[size] = '\0';
	n = split(buf, size, field);
	fuzz_load(cfg, field[0]);
	if (n > 1)
		fuzz_load_nul(data, size);
	if (n >= 3) {
		/* [pool] with two fields, an endpoint section with three */
		const char *ep = n == 4 ? field[1] : NULL;

		fuzz_set(cfg, ep, field[n - 2], field[n - 1]);
		fuzz_set_then_load(ep, field[n - 2], field[n - 1], field[0]);
	}
	pool_config_free(cfg);
	free(buf);
	return 0;
}
