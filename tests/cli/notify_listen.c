/*
 * kz-notify-listen SOCKET_PATH SECONDS: stands in for systemd's notify
 * socket. Binds a Unix datagram socket at SOCKET_PATH and prints each
 * datagram received (sd_notify's "READY=1", "STOPPING=1", ...) as one line,
 * until SECONDS pass. Used by server_ops.sh with NOTIFY_SOCKET set.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: kz-notify-listen SOCKET_PATH SECONDS\n");
        return 2;
    }
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (strlen(argv[1]) >= sizeof a.sun_path) {
        fprintf(stderr, "notify: path too long\n");
        return 2;
    }
    strcpy(a.sun_path, argv[1]);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    unlink(argv[1]);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("notify: bind");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    time_t end = time(NULL) + atoi(argv[2]);
    while (time(NULL) < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0)
            continue;
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        /* One datagram may carry several assignments, one per line. */
        for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save))
            printf("%s\n", line);
    }
    close(fd);
    unlink(argv[1]);
    return 0;
}
