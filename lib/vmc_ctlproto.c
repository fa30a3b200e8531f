// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Control protocol parsing (see vmc_ctlproto.h), on json-c, and the name
 * encoding every string of the daemon's JSON uses. json-c copies string bytes
 * as they are, so nothing that is not UTF-8 may reach json_object_new_string
 * unencoded.
 */
#include "vmc_ctlproto.h"
#include "vmc_crypto.h"
#include "vmc_utf8.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the name encoding ---------------------------------------------------- */

char *vmc_name_encode(const char *name)
{
	const unsigned char *p = (const unsigned char *)name;
	size_t n = strlen(name), o = 0;
	char *out = malloc(3 * n + 1);

	if (!out)
		return NULL;
	for (size_t i = 0; i < n;) {
		size_t l = p[i] == '%' ? 0 : vmc_utf8_seq(p + i, n - i);

		if (l) {
			memcpy(out + o, p + i, l);
			o += l;
			i += l;
		} else {
			snprintf(out + o, 4, "%%%02X", p[i++]);
			o += 3;
		}
	}
	out[o] = '\0';
	return out;
}

json_object *vmc_json_name(const char *name)
{
	json_object *o;
	char *enc;

	if (!name)
		return NULL;
	enc = vmc_name_encode(name);
	if (!enc)
		return NULL;
	o = json_object_new_string(enc);
	free(enc);
	return o;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int vmc_name_decode(char *s, size_t *len)
{
	size_t w = 0;

	for (size_t r = 0; s[r]; r++) {
		if (s[r] == '%') {
			int hi = hexval(s[r + 1]), lo = hi < 0 ? -1 : hexval(s[r + 2]);

			if (lo < 0 || (hi | lo) == 0)
				return -EINVAL;
			s[w++] = (char)(hi << 4 | lo);
			r += 2;
		} else {
			s[w++] = s[r];
		}
	}
	s[w] = '\0';
	if (len)
		*len = w;
	return 0;
}

void vmc_json_repair_utf8(json_object *o)
{
	switch (json_object_get_type(o)) {
	case json_type_string: {
		const char *s = json_object_get_string(o);
		char *enc;

		if (vmc_utf8_valid(s, (size_t)json_object_get_string_len(o)))
			return;
		enc = vmc_name_encode(s);
		if (enc)
			json_object_set_string(o, enc);
		free(enc);
		return;
	}
	case json_type_object: {
		json_object_object_foreach(o, key, val) {
			(void)key;
			vmc_json_repair_utf8(val);
		}
		return;
	}
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(o); i++)
			vmc_json_repair_utf8(json_object_array_get_idx(o, i));
		return;
	default:
		return;
	}
}

/* --- requests ------------------------------------------------------------- */

/* Why @o (any JSON value) is not text the protocol accepts, or NULL. */
static const char *text_problem(json_object *o)
{
	const char *why = NULL;

	switch (json_object_get_type(o)) {
	case json_type_string: {
		const char *s = json_object_get_string(o);
		size_t n = (size_t)json_object_get_string_len(o);

		if (memchr(s, '\0', n))
			return "contains a NUL character";
		return vmc_utf8_valid(s, n) ? NULL : "is not valid UTF-8";
	}
	case json_type_object: {
		json_object_object_foreach(o, key, val) {
			if (!vmc_utf8_valid(key, strlen(key)))
				return "is not valid UTF-8";
			why = why ? why : text_problem(val);
		}
		return why;
	}
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(o) && !why; i++)
			why = text_problem(json_object_array_get_idx(o, i));
		return why;
	default:
		return NULL;
	}
}

/* Every string and key of the request @root is UTF-8 without NUL characters. */
static int check_text(json_object *root, char *err, size_t errlen)
{
	const char *why;

	json_object_object_foreach(root, key, val) {
		if (!vmc_utf8_valid(key, strlen(key))) {
			snprintf(err, errlen, "the request holds a string that is not valid UTF-8");
			return -EINVAL;
		}
		if (strcmp(key, "args") || !json_object_is_type(val, json_type_object)) {
			why = text_problem(val);
			if (why) {
				snprintf(err, errlen, "the request's \"%s\" %s", key, why);
				return -EINVAL;
			}
			continue;
		}
		json_object_object_foreach(val, akey, aval) {
			if (!vmc_utf8_valid(akey, strlen(akey))) {
				snprintf(err, errlen, "an argument name is not valid UTF-8");
				return -EINVAL;
			}
			why = text_problem(aval);
			if (why) {
				bool name = !strcmp(akey, "vm") || !strcmp(akey, "vms");

				snprintf(err, errlen, "argument \"%s\" %s%s", akey, why,
					 name ? " (names that are not UTF-8 are sent %XX-encoded: "
						"see vmcryptfs-ctl(8))" : "");
				return -EINVAL;
			}
		}
	}
	return 0;
}

/* @v, the string of argument @key, in the name encoding: decoded in place. */
static int decode_name(json_object *v, const char *key, json_object **out, char *err,
		       size_t errlen)
{
	char *s = strdup(json_object_get_string(v));
	size_t n;

	if (!s)
		return -ENOMEM;
	if (vmc_name_decode(s, &n)) {
		free(s);
		snprintf(err, errlen, "argument \"%s\" is not a name in the %%XX encoding: each "
			 "'%%' begins %%XX, XX two hex digits other than 00 (a '%%' is %%25)", key);
		return -EINVAL;
	}
	*out = json_object_new_string_len(s, (int)n);
	free(s);
	return *out ? 0 : -ENOMEM;
}

/* The VM directory arguments "vm" and "vms" arrive encoded: decode them. */
static int decode_names(json_object *args, char *err, size_t errlen)
{
	json_object *v, *d;
	int r;

	if (json_object_object_get_ex(args, "vm", &v) && json_object_is_type(v, json_type_string)) {
		r = decode_name(v, "vm", &d, err, errlen);
		if (r)
			return r;
		json_object_object_add(args, "vm", d);
	}
	if (json_object_object_get_ex(args, "vms", &v) && json_object_is_type(v, json_type_array))
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			json_object *e = json_object_array_get_idx(v, i);

			if (!json_object_is_type(e, json_type_string))
				continue; /* the verb refuses it */
			r = decode_name(e, "vms", &d, err, errlen);
			if (r)
				return r;
			json_object_array_put_idx(v, i, d);
		}
	return 0;
}

int vmc_ctl_parse_request(const char *buf, size_t len, struct vmc_ctl_req *req, char *err,
			  size_t errlen)
{
	struct json_tokener *tok;
	json_object *root = NULL, *verb, *args;
	const char *v;
	int r = -EINVAL;

	memset(req, 0, sizeof(*req));
	if (len > VMC_CTL_MAX_REQUEST) {
		snprintf(err, errlen, "request larger than %d bytes", VMC_CTL_MAX_REQUEST);
		return -EMSGSIZE;
	}
	if (memchr(buf, '\0', len)) {
		snprintf(err, errlen, "request contains a NUL byte");
		return -EINVAL;
	}
	tok = json_tokener_new_ex(VMC_CTL_MAX_DEPTH);
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, buf, (int)len);
	if (!root || json_tokener_get_error(tok) != json_tokener_success) {
		snprintf(err, errlen, "not a JSON request: %s",
			 json_tokener_error_desc(json_tokener_get_error(tok)));
		goto out;
	}
	/* Only whitespace may follow the object. */
	for (size_t i = (size_t)json_tokener_get_parse_end(tok); i < len; i++)
		if (!strchr(" \t\r\n", buf[i])) {
			snprintf(err, errlen, "trailing data after the request");
			goto out;
		}
	if (!json_object_is_type(root, json_type_object)) {
		snprintf(err, errlen, "the request is not a JSON object");
		goto out;
	}
	if (check_text(root, err, errlen))
		goto out;
	if (!json_object_object_get_ex(root, "verb", &verb) ||
	    !json_object_is_type(verb, json_type_string)) {
		snprintf(err, errlen, "the request has no \"verb\" string");
		goto out;
	}
	v = json_object_get_string(verb);
	if (!v[0] || strlen(v) >= sizeof(req->verb) || strspn(v, "abcdefghijklmnopqrstuvwxyz-") !=
	    strlen(v)) {
		snprintf(err, errlen, "bad verb");
		goto out;
	}
	if (json_object_object_get_ex(root, "args", &args)) {
		if (!json_object_is_type(args, json_type_object)) {
			snprintf(err, errlen, "\"args\" is not an object");
			goto out;
		}
		req->args = json_object_get(args);
	} else {
		req->args = json_object_new_object();
		if (!req->args) {
			r = -ENOMEM;
			goto out;
		}
	}
	json_object_object_foreach(root, key, val) {
		(void)val;
		if (strcmp(key, "verb") && strcmp(key, "args")) {
			snprintf(err, errlen, "unknown request field \"%s\"", key);
			json_object_put(req->args);
			req->args = NULL;
			goto out;
		}
	}
	r = decode_names(req->args, err, errlen);
	if (r) {
		json_object_put(req->args);
		req->args = NULL;
		goto out;
	}
	strcpy(req->verb, v);
out:
	json_object_put(root);
	json_tokener_free(tok);
	return r;
}

void vmc_ctl_req_free(struct vmc_ctl_req *req)
{
	json_object_put(req->args);
	req->args = NULL;
}

int vmc_ctl_check_args(json_object *args, const char *verb, const char *const *allowed,
		       char *err, size_t errlen)
{
	json_object_object_foreach(args, key, val) {
		size_t i, o;

		(void)val;
		for (i = 0; allowed[i] && strcmp(allowed[i], key); i++)
			;
		if (allowed[i])
			continue;
		o = (size_t)snprintf(err, errlen, "unknown argument \"%.64s\" for %s (%s", key,
				     verb, allowed[0] ? "it takes" : "it takes no arguments");
		for (i = 0; allowed[i] && o < errlen; i++)
			o += (size_t)snprintf(err + o, errlen - o, "%s %s", i ? "," : "",
					      allowed[i]);
		if (o < errlen)
			snprintf(err + o, errlen - o, ")");
		return -EINVAL;
	}
	return 0;
}

static int arg_get(json_object *args, const char *key, json_type type, const char *tname,
		   json_object **out, char *err, size_t errlen)
{
	json_object *v;

	if (!json_object_object_get_ex(args, key, &v) || json_object_is_type(v, json_type_null))
		return 1;
	if (!json_object_is_type(v, type)) {
		snprintf(err, errlen, "argument \"%s\" must be a %s", key, tname);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

int vmc_ctl_arg_str(json_object *args, const char *key, bool required, const char **out,
		    char *err, size_t errlen)
{
	json_object *v;
	int r = arg_get(args, key, json_type_string, "string", &v, err, errlen);

	if (r < 0)
		return r;
	if (r > 0) {
		if (required) {
			snprintf(err, errlen, "argument \"%s\" is required", key);
			return -EINVAL;
		}
		return 0;
	}
	*out = json_object_get_string(v);
	return 0;
}

int vmc_ctl_arg_bool(json_object *args, const char *key, bool *out, char *err, size_t errlen)
{
	json_object *v;
	int r = arg_get(args, key, json_type_boolean, "boolean", &v, err, errlen);

	if (r == 0)
		*out = json_object_get_boolean(v);
	return r < 0 ? r : 0;
}

int vmc_ctl_arg_int(json_object *args, const char *key, long long *out, char *err,
		    size_t errlen)
{
	json_object *v;
	int r = arg_get(args, key, json_type_int, "integer", &v, err, errlen);

	if (r == 0)
		*out = (long long)json_object_get_int64(v);
	return r < 0 ? r : 0;
}

void vmc_ctl_default_socket(const char *mountpoint, char *buf, size_t len)
{
	uint8_t h[VMC_SHA256_LEN];

	vmc_sha256(mountpoint, strlen(mountpoint), h);
	snprintf(buf, len, "%s/%02x%02x%02x%02x%02x%02x%02x%02x.sock", VMC_CTL_DEFAULT_DIR, h[0],
		 h[1], h[2], h[3], h[4], h[5], h[6], h[7]);
}
