/* An embedder of sync.h, built out of tree (test_find_package.sh): queues one
 * event in the state root given and prints the queue size. */
#include <spec-kitty/sync.h>

#include <stdio.h>

int main(int argc, char **argv)
{
    char err[512] = "", id[27];
    sk_sync *s = NULL;
    if (argc != 2 || sk_open(argv[1], &s, err, sizeof err) != SK_OK) {
        fprintf(stderr, "embed: %s\n", argc == 2 ? err : "usage: embed STATE_ROOT");
        return 2;
    }
    sk_queue_info q;
    int ok =
        sk_emit(s, "WPStatusChanged", "WP01", NULL,
                "{\"wp_id\":\"WP01\",\"previous_status\":\"planned\",\"new_status\":\"doing\"}",
                NULL, id) == SK_OK &&
        sk_queue_info_get(s, &q) == SK_OK;
    if (ok)
        printf("queued %s, queue size %lld\n", id, (long long)q.size);
    else
        fprintf(stderr, "embed: %s\n", sk_last_error(s));
    sk_close(s);
    return ok ? 0 : 1;
}
