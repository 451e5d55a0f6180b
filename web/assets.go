package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/internal/apperr"
)

//go:embed static
var static embed.FS

// asset is one embedded file, kept in memory plain and gzipped.
type asset struct {
	body, gz []byte
	ctype    string
}

// assets are the UI's files under one version: the hash of all of them, so
// every URL changes when any file does and may be cached for a year.
type assets struct {
	version string
	files   map[string]*asset // by path under static/, e.g. "js/app.js"
	index   map[string]*asset // the shell page per language
}

// ContentSecurityPolicy is sent with the shell page: scripts and styles
// only from the server's own files (no inline code, no eval), media from
// the camera (blob:), connections to the same origin (fetch, EventSource,
// the consult WebSocket).
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"media-src 'self' blob: mediastream:; connect-src 'self'; font-src 'self'; manifest-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"

func loadAssets() (*assets, error) {
	a := &assets{files: map[string]*asset{}, index: map[string]*asset{}}
	h := sha256.New()
	var names []string
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var shell []byte
	for _, p := range names {
		body, err := static.ReadFile(p)
		if err != nil {
			return nil, err
		}
		rel := strings.TrimPrefix(p, "static/")
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(body))
		h.Write(body)
		if rel == "index.html" {
			shell = body
			continue
		}
		ct := mime.TypeByExtension(path.Ext(rel))
		switch path.Ext(rel) {
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		a.files[rel] = newAsset(body, ct)
	}
	if shell == nil {
		return nil, fmt.Errorf("web: static/index.html missing")
	}
	a.version = hex.EncodeToString(h.Sum(nil))[:12]
	// The core modules and the language's dictionary are preloaded in
	// parallel, so a slow link pays one round trip for them rather than one
	// per level of imports. Pages and their helpers load on first use.
	for _, lang := range []string{"zh-CN", "en"} {
		dict := map[string]string{"zh-CN": "js/zh.js", "en": "js/en.js"}[lang]
		var preload strings.Builder
		for _, p := range names {
			rel := strings.TrimPrefix(p, "static/")
			core := strings.HasPrefix(rel, "js/") && !strings.HasPrefix(rel, "js/pages/") && !strings.HasPrefix(rel, "js/lib/") &&
				rel != "js/en.js" && rel != "js/zh.js"
			if core || rel == dict {
				fmt.Fprintf(&preload, "<link rel=\"modulepreload\" href=\"/assets/%s/%s\">\n", a.version, rel)
			}
		}
		title := "秦巴医联"
		if lang == "en" {
			title = "Qinba health network"
		}
		page := strings.NewReplacer("{{V}}", a.version, "{{LANG}}", lang, "{{TITLE}}", title,
			"{{PRELOAD}}", preload.String()).Replace(string(shell))
		a.index[lang] = newAsset([]byte(page), "text/html; charset=utf-8")
	}
	return a, nil
}

func newAsset(body []byte, ctype string) *asset {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(body)
	zw.Close()
	a := &asset{body: body, ctype: ctype}
	if buf.Len() < len(body) {
		a.gz = buf.Bytes()
	}
	return a
}

// write sends the asset, gzipped when the client accepts it.
func (x *asset) write(c echo.Context, cacheControl string) error {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, x.ctype)
	h.Set("Cache-Control", cacheControl)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Add("Vary", "Accept-Encoding")
	body := x.body
	if x.gz != nil && acceptsGzip(c.Request()) {
		h.Set(echo.HeaderContentEncoding, "gzip")
		body = x.gz
	}
	if c.Request().Method == http.MethodHead {
		h.Set(echo.HeaderContentLength, fmt.Sprint(len(body)))
		return c.NoContent(http.StatusOK)
	}
	return c.Blob(http.StatusOK, "", body)
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// serveAsset serves /assets/:v/*. The current version is cached for a
// year; an old version (a page loaded before an upgrade) gets today's file
// but only briefly cached.
func (u *UI) serveAsset(c echo.Context) error {
	x := u.assets.files[c.Param("*")]
	if x == nil {
		return apperr.E(apperr.NotFound, "no such file")
	}
	cc := "public, max-age=31536000, immutable"
	if c.Param("v") != u.assets.version {
		cc = "no-cache"
	}
	return x.write(c, cc)
}

// serveShell serves the app shell page in the language of the qinba_lang
// cookie (Chinese by default), with the security headers.
func (u *UI) serveShell(c echo.Context) error {
	lang := "zh-CN"
	if ck, err := c.Cookie(LangCookie); err == nil && ck.Value == "en" {
		lang = "en"
	}
	h := c.Response().Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Permissions-Policy", "camera=(self), microphone=(self), geolocation=()")
	h.Add("Vary", "Cookie")
	return u.assets.index[lang].write(c, "no-cache")
}

// Version is the content hash in the assets' URLs.
func (u *UI) Version() string { return u.assets.version }
