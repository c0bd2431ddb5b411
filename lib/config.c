/*
 * Configuration: pool_config_*, the INI loader, section matching.
 *
 * Files go through inih's ini_parse_stream() with our own line reader.
 * The inih in Debian 12 (r55, built without INI_HANDLER_LINENO) gives the
 * handler no line number, and for this format it also gets things wrong:
 *  - a section name ends at the first ']', so [endpoint [::1]:80] is cut,
 *    and names are truncated to 50 bytes (unix socket paths are longer);
 *  - a section without keys never reaches the handler, so a bad or
 *    duplicate one would pass unseen;
 *  - an indented line continues the previous value (multi-line values);
 *  - " ;" starts a comment even inside a quoted close_request.
 * Its switches for these are process-wide variables in this build, and
 * setting them would be global mutable state shared with the application.
 * So the reader counts lines (inih calls the handler while it parses the
 * line just read, so the count is that line's number), parses section
 * headers itself and hands inih a short token in their place, strips
 * indentation and comments, writes ';' inside quotes as \x3b, and stops
 * at the first error. inih still splits "key = value" and calls the
 * handler.
 *
 * A load or a set works on a copy and swaps it in only when it succeeded,
 * so a bad file or value leaves the config untouched. The rules across
 * keys are checked after a whole file; pool_config_set() leaves them to
 * config_validate(), since keys come one call at a time.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config-keys.h"

/* Room for a section pattern or key name quoted in a message. */
#define SHOWN 160

/* A section as it appears in the file being loaded. */
struct file_section {
	long idx;                  /* in cfg->sections; -1 for [pool] */
	int line;                  /* of its header */
	int keyline[CONFIG_NKEYS]; /* where each key was set; 0: not here */
};

struct load_ctx {
	struct pool_config *cfg;   /* the copy the file is applied to */
	FILE *fp;
	char *buf;                 /* getline() buffer */
	size_t bufcap;
	int lineno;                /* of the line last read */
	struct file_section *fsec;
	size_t nfsec;
	int rc;                    /* the first error; 0 while none */
	int err_line;              /* its line; 0 when it has none */
	char msg[512];             /* its text, without "FILE:LINE: " */
};

/* A rule the whole configuration must satisfy, broken. */
struct violation {
	long idx;                  /* the section; -1 for [pool] */
	int key, other;            /* the keys involved, most to blame first */
	char why[128];
};

static void __attribute__((format(printf, 3, 4)))
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' ||
	       c == '\v' || c == '\f';
}

/* Strip leading and trailing blanks in place. */
static char *trim(char *s)
{
	size_t n;

	while (is_blank(*s))
		s++;
	n = strlen(s);
	while (n > 0 && is_blank(s[n - 1]))
		s[--n] = '\0';
	return s;
}

static void shown_text(char *out, size_t outlen, const char *s)
{
	config_escape(out, outlen, s, strlen(s));
}

/* ---- allocation ---- */

static void config_clear(struct pool_config *cfg)
{
	size_t i;

	settings_release(&cfg->defaults);
	for (i = 0; i < cfg->nsections; i++) {
		free(cfg->sections[i].pattern);
		settings_release(&cfg->sections[i].set);
	}
	free(cfg->sections);
	memset(cfg, 0, sizeof(*cfg));
}

/* Replace dst's contents with src's and free src. Cannot fail. */
static void config_move(struct pool_config *dst, struct pool_config *src)
{
	config_clear(dst);
	*dst = *src;
	free(src);
}

static void config_destroy(struct pool_config *cfg)
{
	if (!cfg)
		return;
	config_clear(cfg);
	free(cfg);
}

static int section_copy(struct pool_section *dst, const struct pool_section *src)
{
	*dst = *src;
	dst->pattern = NULL; /* never leave src's pointers in dst */
	if (settings_own(&dst->set, &src->set))
		return POOL_ENOMEM;
	dst->pattern = strdup(src->pattern);
	return dst->pattern ? 0 : POOL_ENOMEM;
}

struct pool_config *config_copy(const struct pool_config *cfg)
{
	struct pool_config *c;
	size_t i;

	if (!cfg)
		return NULL;
	c = malloc(sizeof(*c));
	if (!c)
		return NULL;
	*c = *cfg;
	c->sections = NULL;
	c->nsections = 0;
	if (settings_own(&c->defaults, &cfg->defaults))
		goto out;
	if (cfg->nsections) {
		c->sections = calloc(cfg->nsections, sizeof(*c->sections));
		if (!c->sections)
			goto out;
	}
	for (i = 0; i < cfg->nsections; i++) {
		c->nsections++;
		if (section_copy(&c->sections[i], &cfg->sections[i]))
			goto out;
	}
	return c;
out:
	config_destroy(c);
	return NULL;
}

/* ---- sections and matching ---- */

/* Two patterns naming the same endpoints (host names ignore case). */
static bool addr_same(const struct endpoint_addr *a, const struct endpoint_addr *b)
{
	if (a->kind != b->kind)
		return false;
	if (a->kind == EP_UNIX)
		return strcmp(a->path, b->path) == 0;
	return a->port == b->port && a->wildcard_host == b->wildcard_host &&
	       strcasecmp(a->host, b->host) == 0;
}

static bool pattern_matches(const struct endpoint_addr *pat,
                            const struct endpoint_addr *a)
{
	if (pat->kind != a->kind)
		return false;
	if (pat->kind == EP_UNIX)
		return strcmp(pat->path, a->path) == 0;
	return pat->port == a->port &&
	       (pat->wildcard_host || strcasecmp(pat->host, a->host) == 0);
}

static long section_find(const struct pool_config *cfg,
                         const struct endpoint_addr *addr)
{
	size_t i;

	for (i = 0; i < cfg->nsections; i++)
		if (addr_same(&cfg->sections[i].addr, addr))
			return (long)i;
	return -1;
}

static int section_add(struct pool_config *cfg, const char *pattern,
                       const struct endpoint_addr *addr, int line)
{
	struct pool_section *grown, *sec;
	char *copy;

	if (cfg->nsections >= CONFIG_MAX_SECTIONS)
		return POOL_ECONFIG;
	copy = strdup(pattern);
	if (!copy)
		return POOL_ENOMEM;
	grown = realloc(cfg->sections, (cfg->nsections + 1) * sizeof(*grown));
	if (!grown) {
		free(copy);
		return POOL_ENOMEM;
	}
	cfg->sections = grown;
	sec = &grown[cfg->nsections++];
	memset(sec, 0, sizeof(*sec));
	sec->pattern = copy;
	sec->addr = *addr;
	sec->line = line;
	return 0;
}

/* The section for pattern, added when absent; *idx is its index. */
static int section_get(struct pool_config *cfg, const char *pattern, int line,
                       long *idx, char *why, size_t whylen)
{
	struct endpoint_addr addr;
	char reason[128];
	int rc;

	if (*pattern == '\0') {
		snprintf(why, whylen, "missing endpoint pattern");
		return POOL_ECONFIG;
	}
	if (endpoint_parse(pattern, true, &addr, reason, sizeof(reason))) {
		snprintf(why, whylen, "bad endpoint pattern: %s", reason);
		return POOL_ECONFIG;
	}
	*idx = section_find(cfg, &addr);
	if (*idx >= 0)
		return 0;
	rc = section_add(cfg, pattern, &addr, line);
	if (rc == POOL_ECONFIG)
		snprintf(why, whylen, "too many sections (max %u)",
		         CONFIG_MAX_SECTIONS);
	else if (rc)
		snprintf(why, whylen, "out of memory");
	*idx = (long)cfg->nsections - 1;
	return rc;
}

const pool_hooks_t *config_hooks(const struct pool_config *cfg,
                                  const struct pool_section *sec)
{
	if (sec && sec->hooks_set)
		return &sec->hooks;
	return cfg->hooks_set ? &cfg->hooks : NULL;
}

/* For pool_config_set_hooks: the section for pattern (*idx), added when
 * absent if add is true (else *idx = -1). A bad pattern is
 * POOL_EENDPOINT; nothing is added on failure. */
static int section_lookup_or_add(struct pool_config *cfg, const char *pattern,
                                 bool add, long *idx, char *why, size_t whylen)
{
	struct endpoint_addr addr;
	int rc;

	*idx = -1;
	if (*pattern == '\0' || endpoint_parse(pattern, true, &addr, why, whylen))
		return POOL_EENDPOINT;
	*idx = section_find(cfg, &addr);
	if (*idx >= 0 || !add)
		return 0;
	rc = section_get(cfg, pattern, 0, idx, why, whylen);
	if (rc) {
		*idx = -1;
		return rc == POOL_ECONFIG ? POOL_ECONFIG : POOL_ENOMEM;
	}
	return 0;
}

/* The section whose keys (and hooks) an endpoint gets, or NULL. */
static const struct pool_section *section_best(const struct pool_config *cfg,
                                               const struct endpoint_addr *addr)
{
	const struct pool_section *best = NULL;
	size_t i;

	for (i = 0; addr && i < cfg->nsections; i++) {
		const struct pool_section *sec = &cfg->sections[i];

		if (!pattern_matches(&sec->addr, addr))
			continue;
		/* An exact host beats "*", whatever the order in the file. */
		if (!best || (best->addr.wildcard_host && !sec->addr.wildcard_host))
			best = sec;
	}
	return best;
}

const pool_hooks_t *config_resolve_hooks(const struct pool_config *cfg,
                                         const struct endpoint_addr *addr)
{
	return config_hooks(cfg, section_best(cfg, addr));
}

int config_resolve(const struct pool_config *cfg, const struct endpoint_addr *addr,
                   struct pool_settings *out)
{
	struct pool_settings eff;
	int rc;

	config_overlay(&eff, &cfg->defaults, section_best(cfg, addr));
	*out = eff;
	rc = settings_own(out, &eff);
	if (rc)
		settings_release(out);
	return rc;
}

/* ---- validation of a whole configuration ---- */

/* hooks: the section's effective hooks (a close_request hook stands in
 * for the close_request bytes). */
static bool settings_broken(const struct pool_settings *s, const pool_hooks_t *hooks,
                            struct violation *v)
{
	v->key = v->other = -1;
	if (s->teardown == TEARDOWN_PEER_FIRST && s->close_request_len == 0 &&
	    !(hooks && hooks->close_request)) {
		v->key = KEY_TEARDOWN;
		v->other = KEY_CLOSE_REQUEST;
		snprintf(v->why, sizeof(v->why), "peer-first needs a close_request");
	} else if (s->min_idle > s->max_idle) {
		v->key = KEY_MIN_IDLE;
		v->other = KEY_MAX_IDLE;
		snprintf(v->why, sizeof(v->why), "min_idle (%u) exceeds max_idle (%u)",
		         s->min_idle, s->max_idle);
	} else if (s->max_active && s->min_idle > s->max_active) {
		v->key = KEY_MIN_IDLE;
		v->other = KEY_MAX_ACTIVE;
		snprintf(v->why, sizeof(v->why), "min_idle (%u) exceeds max_active (%u)",
		         s->min_idle, s->max_active);
	} else if (s->fallback != TEARDOWN_ABORT && s->fallback != TEARDOWN_CLOSE) {
		/* The parser cannot produce this; a caller poking the struct can. */
		v->key = v->other = KEY_FALLBACK;
		snprintf(v->why, sizeof(v->why), "fallback must be abort or close");
	}
	return v->key >= 0;
}

/* [pool] first: its settings are what every unmatched endpoint gets. */
static bool config_broken(const struct pool_config *cfg, struct violation *v)
{
	struct pool_settings eff;
	size_t i;

	v->idx = -1;
	if (settings_broken(&cfg->defaults, config_hooks(cfg, NULL), v))
		return true;
	for (i = 0; i < cfg->nsections; i++) {
		config_overlay(&eff, &cfg->defaults, &cfg->sections[i]);
		v->idx = (long)i;
		if (settings_broken(&eff, config_hooks(cfg, &cfg->sections[i]), v))
			return true;
	}
	return false;
}

/* "[pool]" or "[endpoint PATTERN]" */
static void section_name(char *out, size_t outlen, const struct pool_config *cfg,
                         long idx)
{
	char shown[SHOWN];

	if (idx < 0) {
		snprintf(out, outlen, "[pool]");
		return;
	}
	shown_text(shown, sizeof(shown), cfg->sections[idx].pattern);
	snprintf(out, outlen, "[endpoint %s]", shown);
}

/* ---- the file reader ---- */

static void __attribute__((format(printf, 4, 5)))
load_fail(struct load_ctx *ctx, int rc, int line, const char *fmt, ...)
{
	va_list ap;

	if (ctx->rc)
		return; /* the first error is the one reported */
	va_start(ap, fmt);
	vsnprintf(ctx->msg, sizeof(ctx->msg), fmt, ap);
	va_end(ap);
	ctx->rc = rc;
	ctx->err_line = line;
}

static struct file_section *fsec_of(struct load_ctx *ctx, long idx)
{
	size_t i;

	for (i = 0; i < ctx->nfsec; i++)
		if (ctx->fsec[i].idx == idx)
			return &ctx->fsec[i];
	return NULL;
}

/* Record a section opened by the file and write its token for inih. */
static int fsec_open(struct load_ctx *ctx, long idx, char *out, size_t outlen)
{
	struct file_section *grown;
	int n;

	grown = realloc(ctx->fsec, (ctx->nfsec + 1) * sizeof(*grown));
	if (!grown) {
		load_fail(ctx, POOL_ENOMEM, ctx->lineno, "out of memory");
		return ctx->rc;
	}
	ctx->fsec = grown;
	memset(&grown[ctx->nfsec], 0, sizeof(*grown));
	grown[ctx->nfsec].idx = idx;
	grown[ctx->nfsec].line = ctx->lineno;
	n = snprintf(out, outlen, "[%zu]", ctx->nfsec++);
	if (n < 0 || (size_t)n >= outlen)
		load_fail(ctx, POOL_ECONFIG, ctx->lineno, "line too long");
	return ctx->rc;
}

/* The file section named by the token fsec_open wrote; NULL for "". */
static struct file_section *fsec_by_token(struct load_ctx *ctx, const char *tok)
{
	char *end;
	unsigned long i;

	if (*tok < '0' || *tok > '9')
		return NULL;
	i = strtoul(tok, &end, 10);
	if (*end != '\0' || i >= ctx->nfsec)
		return NULL;
	return &ctx->fsec[i];
}

static int open_pool(struct load_ctx *ctx, char *out, size_t outlen)
{
	const struct file_section *fs = fsec_of(ctx, -1);

	if (fs) {
		load_fail(ctx, POOL_ECONFIG, ctx->lineno,
		          "[pool]: duplicate section (first on line %d)", fs->line);
		return ctx->rc;
	}
	return fsec_open(ctx, -1, out, outlen);
}

static int open_endpoint(struct load_ctx *ctx, const char *pattern,
                         const char *shown, char *out, size_t outlen)
{
	const struct file_section *fs;
	char why[256];
	long idx;
	int rc;

	rc = section_get(ctx->cfg, pattern, ctx->lineno, &idx, why, sizeof(why));
	if (rc) {
		load_fail(ctx, rc, ctx->lineno, "[%s]: %s", shown, why);
		return rc;
	}
	fs = fsec_of(ctx, idx);
	if (fs) {
		load_fail(ctx, POOL_ECONFIG, ctx->lineno,
		          "[%s]: duplicate section (first on line %d)", shown, fs->line);
		return ctx->rc;
	}
	return fsec_open(ctx, idx, out, outlen);
}

/* The ']' that closes the '[' at line[0], counting nested brackets so
 * that [endpoint [::1]:80] keeps its IPv6 literal. */
static char *header_end(char *line)
{
	int depth = 0;

	for (; *line; line++) {
		if (*line == '[')
			depth++;
		else if (*line == ']' && --depth == 0)
			return line;
	}
	return NULL;
}

/* "[pool]" or "[endpoint PATTERN]", maybe followed by a comment. */
static int header_line(struct load_ctx *ctx, char *line, char *out, size_t outlen)
{
	char *end = header_end(line), *name, *rest;
	char shown[SHOWN];

	if (!end) {
		load_fail(ctx, POOL_ECONFIG, ctx->lineno,
		          "bad section header: missing ']'");
		return ctx->rc;
	}
	*end = '\0';
	name = trim(line + 1);
	shown_text(shown, sizeof(shown), name);
	for (rest = end + 1; is_blank(*rest); rest++)
		;
	if (*rest != '\0' && *rest != ';' && *rest != '#')
		load_fail(ctx, POOL_ECONFIG, ctx->lineno, "[%s]: junk after ']'", shown);
	else if (strcmp(name, "pool") == 0)
		return open_pool(ctx, out, outlen);
	else if (strncmp(name, "endpoint", 8) == 0 && (!name[8] || is_blank(name[8])))
		return open_endpoint(ctx, trim(name + 8), shown, out, outlen);
	else
		load_fail(ctx, POOL_ECONFIG, ctx->lineno,
		          "[%s]: unknown section (expected [pool] or [endpoint PATTERN])",
		          shown);
	return ctx->rc;
}

/* Copy a key line for inih: comments cut, and ';' inside quotes written
 * as \x3b, since inih would take " ;" there for a comment. */
static int key_line(struct load_ctx *ctx, const char *line, char *out, size_t outlen)
{
	bool quoted = false, escaped = false, sep = false;
	bool lead = false; /* after the first '=' or ':', only blanks yet */
	const char *p;
	size_t o = 0;

	for (p = line; *p; p++) {
		const char *emit = p;
		size_t n = 1;
		bool opens_value = !quoted && !sep && (*p == '=' || *p == ':');

		/* A quote opens a quoted value (close_request's syntax) only
		 * as the value's first character; elsewhere, in a path, it
		 * is text, and a ';' after it no comment to protect. */
		if (quoted) {
			if (escaped)
				escaped = false;
			else if (*p == '\\')
				escaped = true;
			else if (*p == '"')
				quoted = false;
			else if (*p == ';') {
				emit = "\\x3b";
				n = 4;
			}
		} else if (*p == '"' && lead) {
			quoted = true;
		} else if ((*p == ';' || *p == '#') && is_blank(p[-1])) {
			break; /* p > line: a line never starts with a blank here */
		} else if (*p == '=' || *p == ':') {
			sep = true;
		}
		lead = opens_value || (lead && is_blank(*p));
		if (o + n >= outlen) {
			load_fail(ctx, POOL_ECONFIG, ctx->lineno,
			          "line too long (max %zu characters)", outlen - 1);
			return ctx->rc;
		}
		memcpy(out + o, emit, n);
		o += n;
	}
	out[o] = '\0';
	if (!sep)
		load_fail(ctx, POOL_ECONFIG, ctx->lineno,
		          "syntax error: expected [section] or key = value");
	return ctx->rc;
}

/* Rewrite one trimmed line into inih's buffer. */
static int cook_line(struct load_ctx *ctx, char *line, char *out, size_t outlen)
{
	if (*line == '\0' || *line == ';' || *line == '#') {
		out[0] = '\0';
		return 0;
	}
	if (*line == '[')
		return header_line(ctx, line, out, outlen);
	return key_line(ctx, line, out, outlen);
}

static void read_error(struct load_ctx *ctx)
{
	int e = errno;

	if (e == ENOMEM) {
		load_fail(ctx, POOL_ENOMEM, 0, "out of memory");
	} else if (ferror(ctx->fp)) {
		errno = e;
		load_fail(ctx, POOL_ESYS, 0, "%m");
	}
}

/* inih's ini_reader: one line per call, so inih's count matches ours. */
static char *read_line(char *str, int num, void *stream)
{
	struct load_ctx *ctx = stream;
	ssize_t n;
	char *line;

	if (ctx->rc || num < 1)
		return NULL; /* stop at the first error */
	errno = 0;
	n = getline(&ctx->buf, &ctx->bufcap, ctx->fp);
	if (n < 0) {
		read_error(ctx);
		return NULL;
	}
	ctx->lineno++;
	if (memchr(ctx->buf, '\0', (size_t)n)) {
		load_fail(ctx, POOL_ECONFIG, ctx->lineno, "NUL byte in line");
		return NULL;
	}
	line = ctx->buf;
	if (ctx->lineno == 1 && strncmp(line, "\xef\xbb\xbf", 3) == 0)
		line += 3; /* a UTF-8 byte order mark */
	if (cook_line(ctx, trim(line), str, (size_t)num))
		return NULL;
	return str;
}

/* inih's handler: one "key = value" in the section the token names. */
static int on_key(void *user, const char *section, const char *name,
                  const char *value)
{
	struct load_ctx *ctx = user;
	struct file_section *fs = fsec_by_token(ctx, section);
	char why[256], shown[SHOWN];
	int idx, rc;

	shown_text(shown, sizeof(shown), name);
	idx = config_key_index(name);
	if (ctx->rc)
		return 0;
	if (*name == '\0')
		load_fail(ctx, POOL_ECONFIG, ctx->lineno, "missing key name");
	else if (!fs)
		load_fail(ctx, POOL_ECONFIG, ctx->lineno,
		          "%s: key outside any section", shown);
	else if (idx < 0)
		load_fail(ctx, POOL_ECONFIG, ctx->lineno, "%s: unknown key", shown);
	else if (fs->keyline[idx])
		load_fail(ctx, POOL_ECONFIG, ctx->lineno, "%s: already set on line %d",
		          shown, fs->keyline[idx]);
	if (ctx->rc)
		return 0;
	rc = config_key_set(ctx->cfg, fs->idx < 0 ? NULL : &ctx->cfg->sections[fs->idx],
	                    idx, value, why, sizeof(why));
	if (rc) {
		load_fail(ctx, rc, ctx->lineno, "%s: %s", shown, why);
		return 0;
	}
	fs->keyline[idx] = ctx->lineno;
	return 1;
}

/* The line of this file to blame for v: the failing section's own keys,
 * then its header, then the [pool] keys it inherits. *own is false when
 * the line is not in the failing section. 0: the file never touched it. */
static int blame(struct load_ctx *ctx, const struct violation *v, int *key,
                 bool *own)
{
	const struct file_section *fs = fsec_of(ctx, v->idx);
	const struct file_section *pool = v->idx < 0 ? NULL : fsec_of(ctx, -1);

	*key = v->key;
	*own = true;
	if (fs && fs->keyline[v->key])
		return fs->keyline[v->key];
	*key = v->other;
	if (fs && fs->keyline[v->other])
		return fs->keyline[v->other];
	*key = v->key;
	if (fs)
		return fs->line;
	*own = false;
	if (pool && pool->keyline[v->key])
		return pool->keyline[v->key];
	*key = v->other;
	if (pool && pool->keyline[v->other])
		return pool->keyline[v->other];
	*key = v->key;
	return 0;
}

static void load_validate(struct load_ctx *ctx)
{
	struct violation v;
	char where[SHOWN + 32] = "";
	bool own;
	int key, line;

	if (ctx->rc || !config_broken(ctx->cfg, &v))
		return;
	line = blame(ctx, &v, &key, &own);
	if (!own) {
		char name[SHOWN + 16];

		section_name(name, sizeof(name), ctx->cfg, v.idx);
		snprintf(where, sizeof(where), " (in %s)", name);
	}
	load_fail(ctx, POOL_ECONFIG, line, "%s: %s%s", config_keys[key].name,
	          v.why, where);
}

static void load_run(struct load_ctx *ctx)
{
	int line = ini_parse_stream(read_line, ctx, on_key, ctx);

	/* The reader checks inih's syntax rules first, so an error only
	 * inih saw means its rules changed under us; still report it. */
	if (line == -2)
		load_fail(ctx, POOL_ENOMEM, 0, "out of memory");
	else if (line > 0)
		load_fail(ctx, POOL_ECONFIG, line, "syntax error");
	load_validate(ctx);
}

/* ---- the public functions ---- */

POOL_API pool_config_t *pool_config_new(void)
{
	struct pool_config *cfg = calloc(1, sizeof(*cfg));

	if (cfg)
		config_set_defaults(cfg);
	return cfg;
}

POOL_API void pool_config_free(pool_config_t *cfg)
{
	config_destroy(cfg);
}

POOL_API int pool_config_load(pool_config_t *cfg, const char *path,
                              char *err, size_t errlen)
{
	struct load_ctx ctx;

	if (!cfg || !path) {
		set_err(err, errlen, "invalid argument");
		return POOL_EINVAL;
	}
	memset(&ctx, 0, sizeof(ctx));
	ctx.fp = fopen(path, "re");
	if (!ctx.fp) {
		int e = errno;

		set_err(err, errlen, "%s: %m", path);
		return e == ENOMEM ? POOL_ENOMEM : POOL_ESYS;
	}
	ctx.cfg = config_copy(cfg);
	if (ctx.cfg)
		load_run(&ctx);
	else
		load_fail(&ctx, POOL_ENOMEM, 0, "out of memory");
	if (ctx.rc == 0) {
		config_move(cfg, ctx.cfg);
		ctx.cfg = NULL;
		set_err(err, errlen, "%s", "");
	} else if (ctx.err_line) {
		set_err(err, errlen, "%s:%d: %s", path, ctx.err_line, ctx.msg);
	} else {
		set_err(err, errlen, "%s: %s", path, ctx.msg);
	}
	fclose(ctx.fp);
	free(ctx.buf);
	free(ctx.fsec);
	config_destroy(ctx.cfg);
	return ctx.rc;
}

int config_validate(const struct pool_config *cfg, char *err, size_t errlen)
{
	struct violation v;
	char name[SHOWN + 16];

	if (!config_broken(cfg, &v))
		return 0;
	section_name(name, sizeof(name), cfg, v.idx);
	if (v.idx < 0)
		set_err(err, errlen, "%s: %s", config_keys[v.key].name, v.why);
	else
		set_err(err, errlen, "%s %s: %s", name, config_keys[v.key].name, v.why);
	return POOL_ECONFIG;
}

int config_each_settings(const struct pool_config *cfg,
			 int (*fn)(const struct pool_settings *s,
				   const char *where, void *ud),
			 void *ud)
{
	struct pool_settings eff;
	char where[SHOWN + 16];
	size_t i;
	int rc = fn(&cfg->defaults, "[pool]", ud);

	for (i = 0; !rc && i < cfg->nsections; i++) {
		config_overlay(&eff, &cfg->defaults, &cfg->sections[i]);
		section_name(where, sizeof(where), cfg, (long)i);
		rc = fn(&eff, where, ud);
	}
	return rc;
}

struct warn_ctx {
	void (*warn)(const char *msg, void *ud);
	void *ud;
	unsigned n;
};

/* One section's settings (s): max_idle below max_active means a burst
 * can leave more connections idle than max_idle keeps. */
static int settings_warn(const struct pool_settings *s, const char *name,
                         void *arg)
{
	struct warn_ctx *w = arg;
	char msg[SHOWN + 256];

	if (!s->max_active || s->max_idle >= s->max_active)
		return 0;
	if (s->idle_shrink_ms)
		snprintf(msg, sizeof(msg), "%s max_idle: %u is below max_active (%u): "
		         "after a burst, idle connections above %u are retired, half "
		         "of them every idle_shrink_ms (%u ms)", name, s->max_idle,
		         s->max_active, s->max_idle, s->idle_shrink_ms);
	else
		snprintf(msg, sizeof(msg), "%s max_idle: %u is below max_active (%u) "
		         "and idle_shrink_ms is 0: every connection given back above "
		         "%u idle is closed at once, and a burst opens them again",
		         name, s->max_idle, s->max_active, s->max_idle);
	w->warn(msg, w->ud);
	w->n++;
	return 0; /* every section is looked at */
}

unsigned config_warnings(const struct pool_config *cfg,
                         void (*warn)(const char *msg, void *ud), void *ud)
{
	struct warn_ctx w = { warn, ud, 0 };

	config_each_settings(cfg, settings_warn, &w);
	return w.n;
}

/* Apply key = value to tmp in [pool] (pattern NULL) or its section;
 * prefix starts every message ("" or "[endpoint PATTERN] "). Rules across
 * keys are left to config_validate(): pool_config_set() is called one key
 * at a time, and "teardown = peer-first" may well come before its
 * close_request. */
static int set_in(struct pool_config *tmp, const char *pattern, int key,
                  const char *value, const char *prefix, char *err, size_t errlen)
{
	char why[256];
	long idx = -1;
	int rc;

	if (pattern) {
		rc = section_get(tmp, pattern, 0, &idx, why, sizeof(why));
		if (rc) {
			/* "[endpoint PATTERN] " without its trailing blank */
			set_err(err, errlen, "%.*s: %s", (int)strlen(prefix) - 1,
			        prefix, why);
			return rc;
		}
	}
	rc = config_key_set(tmp, idx < 0 ? NULL : &tmp->sections[idx], key, value,
	                    why, sizeof(why));
	if (rc)
		set_err(err, errlen, "%s%s: %s", prefix, config_keys[key].name, why);
	return rc;
}

POOL_API int pool_config_set(pool_config_t *cfg, const char *endpoint,
                             const char *key, const char *value,
                             char *err, size_t errlen)
{
	struct pool_config *tmp = NULL;
	char prefix[SHOWN + 16] = "", shown[SHOWN];
	char *val = NULL, *pat = NULL;
	int k, rc = POOL_ENOMEM;

	if (!cfg || !key || !value) {
		set_err(err, errlen, "invalid argument");
		return POOL_EINVAL;
	}
	val = strdup(value);
	pat = endpoint ? strdup(endpoint) : NULL;
	tmp = config_copy(cfg);
	if (!val || (endpoint && !pat) || !tmp) {
		set_err(err, errlen, "out of memory");
		goto out;
	}
	if (pat) {
		shown_text(shown, sizeof(shown), trim(pat));
		snprintf(prefix, sizeof(prefix), "[endpoint %s] ", shown);
	}
	k = config_key_index(key);
	if (k < 0) {
		shown_text(shown, sizeof(shown), key);
		set_err(err, errlen, "%s%s: unknown key", prefix, shown);
		rc = POOL_ECONFIG;
		goto out;
	}
	rc = set_in(tmp, pat ? trim(pat) : NULL, k, trim(val), prefix, err, errlen);
	if (rc == 0) {
		config_move(cfg, tmp);
		tmp = NULL;
		set_err(err, errlen, "%s", "");
	}
out:
	free(val);
	free(pat);
	config_destroy(tmp);
	return rc;
}

POOL_API int pool_config_check(const pool_config_t *cfg, char *err, size_t errlen)
{
	int rc;

	if (!cfg) {
		set_err(err, errlen, "invalid argument");
		return POOL_EINVAL;
	}
	if (config_validate(cfg, err, errlen))
		return POOL_ECONFIG;
	/* The same verdict as pool_create: keys this kernel cannot honour
	 * (local_port_range before Linux 6.3) are POOL_ENOTSUP. */
	rc = socket_check_support(cfg, err, errlen);
	if (rc)
		return rc;
	set_err(err, errlen, "%s", "");
	return 0;
}

POOL_API int pool_config_set_hooks(pool_config_t *cfg, const char *endpoint,
                                   const pool_hooks_t *hooks)
{
	struct pool_section *sec;
	char why[256];
	char *pat;
	long idx;
	int rc;

	if (!cfg)
		return POOL_EINVAL;
	if (!endpoint) {
		cfg->hooks_set = hooks != NULL;
		memset(&cfg->hooks, 0, sizeof(cfg->hooks));
		if (hooks)
			cfg->hooks = *hooks;
		return 0;
	}
	pat = strdup(endpoint);
	if (!pat)
		return POOL_ENOMEM;
	/* Adds the section when absent (pool_config_set does the same);
	 * clearing the hooks of a section that does not exist adds none. */
	rc = section_lookup_or_add(cfg, trim(pat), hooks != NULL, &idx, why,
	                           sizeof(why));
	free(pat);
	if (rc || idx < 0)
		return rc;
	sec = &cfg->sections[idx];
	sec->hooks_set = hooks != NULL;
	memset(&sec->hooks, 0, sizeof(sec->hooks));
	if (hooks)
		sec->hooks = *hooks;
	return 0;
}

POOL_API void pool_config_set_log(pool_config_t *cfg, pool_log_fn fn, void *ud)
{
	if (!cfg)
		return;
	cfg->log_fn = fn;
	cfg->log_ud = fn ? ud : NULL;
}
