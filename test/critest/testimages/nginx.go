package main

import (
	"fmt"

	"github.com/cri-mini/cri-mini/test/critest/internal/imagebuild"
)

const (
	// nginx runs in the foreground (the image's Cmd passes "daemon off;") as
	// PID 1, so /proc/1/cmdline reads "nginx: master process ..." as the
	// PID namespace specs expect, and writes its pid where they look for it.
	nginxConf = `user www-data;
worker_processes 1;
pid /var/run/nginx.pid;
error_log /var/log/nginx/error.log notice;

events {
    worker_connections 1024;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /var/log/nginx/access.log;
    sendfile on;
    keepalive_timeout 65;
    include /etc/nginx/conf.d/*.conf;
}
`
	nginxIndex = `<!DOCTYPE html>
<html>
<head><title>Welcome to nginx!</title></head>
<body><h1>Welcome to nginx!</h1></body>
</html>
`
	nginx50x = `<!DOCTYPE html>
<html>
<head><title>Error</title></head>
<body><h1>An error occurred.</h1></body>
</html>
`
)

// nginxServer is the default server block listening on port.
func nginxServer(port int) string {
	return fmt.Sprintf(`server {
    listen       %d;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }

    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
`, port)
}

// nginxTree is the layer adding Debian's nginx and its libraries on top of
// base. Logs go to the container's stdout and stderr through symlinks, as
// in the upstream image, so they reach the CRI log.
func nginxTree(pool, base *imagebuild.Tree) (*imagebuild.Tree, error) {
	t := imagebuild.NewTree()
	steps := []error{
		copyTool(t, pool, tool{"/usr/sbin/nginx", "/usr/sbin/nginx"}),
		copyTool(t, pool, tool{"/etc/nginx/mime.types", "/etc/nginx/mime.types"}),
		t.AddFile("/etc/nginx/nginx.conf", []byte(nginxConf), 0o644, 0, 0),
		t.AddFile("/etc/nginx/conf.d/default.conf", []byte(nginxServer(80)), 0o644, 0, 0),
		t.AddFile("/usr/share/nginx/html/index.html", []byte(nginxIndex), 0o644, 0, 0),
		t.AddFile("/usr/share/nginx/html/50x.html", []byte(nginx50x), 0o644, 0, 0),
		// Debian's build keeps its temp paths under /var/lib/nginx; nginx
		// creates the subdirectories itself, owned by the worker user.
		t.AddDir("/var/lib/nginx", 0o755, 0, 0),
		t.AddDir("/var/log/nginx", 0o755, 0, 0),
		t.AddSymlink("/var/log/nginx/access.log", "/dev/stdout"),
		t.AddSymlink("/var/log/nginx/error.log", "/dev/stderr"),
	}
	for _, err := range steps {
		if err != nil {
			return nil, fmt.Errorf("nginx tree: %w", err)
		}
	}
	if err := imagebuild.AddLibraries(t, pool, []string{"/usr/sbin/nginx"}, base); err != nil {
		return nil, fmt.Errorf("nginx libraries: %w", err)
	}
	return t, nil
}
