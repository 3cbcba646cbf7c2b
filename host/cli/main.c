#include <spec-kitty/sync.h>
#include <stdio.h>
int main(void)
{
    puts(SK_VERSION);
    return 0;
}
