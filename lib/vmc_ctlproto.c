// SPDX-License-Identifier: GPL-2.0-or-later
/* Control protocol parsing (see vmc_ctlproto.h), on json-c. */
#include "vmc_ctlproto.h"
#include "vmc_crypto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

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
	strcpy(req->verb, v);
	r = 0;
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
