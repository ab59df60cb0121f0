import { SparklesIcon } from 'lucide-react'

import { Badge } from '@/components/ui/badge'
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from '@/components/ui/card'
import { Skeleton } from '@/components/ui/skeleton'

export default function App() {
  return (
    <main className="flex min-h-svh items-center justify-center bg-background p-6 text-foreground">
      <Card className="w-full max-w-md">
        <CardHeader className="justify-items-center text-center">
          <div className="mb-2 flex size-11 items-center justify-center rounded-full bg-muted">
            <SparklesIcon className="size-5 text-muted-foreground" />
          </div>
          <CardTitle className="text-xl">Your app will appear here</CardTitle>
          <CardDescription>
            Describe what you want to build in the chat, and CodeFlux will write it into this project.
          </CardDescription>
        </CardHeader>
        <CardContent className="space-y-3">
          <Skeleton className="h-4 w-3/4" />
          <Skeleton className="h-4 w-full" />
          <Skeleton className="h-4 w-5/6" />
          <div className="flex justify-center gap-2 pt-3">
            <Badge variant="secondary">React</Badge>
            <Badge variant="secondary">Tailwind CSS</Badge>
            <Badge variant="outline">Vite</Badge>
          </div>
        </CardContent>
      </Card>
    </main>
  )
}
