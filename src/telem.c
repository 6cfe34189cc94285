#include <stdio.h>
int main(void) { puts("telem"); return 0; }
