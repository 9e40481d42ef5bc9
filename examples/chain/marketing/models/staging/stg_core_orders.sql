with

source as (

    select * from {{ source('core', 'orders') }}

),

renamed as (

    select
        order_id,
        customer_id,
        amount as order_amount

    from source

    where status <> 'returned'

)

select * from renamed
